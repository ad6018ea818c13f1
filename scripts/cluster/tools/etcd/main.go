// Command etcd is the etcd server of the pinned release (the version the
// Kubernetes release in go.mod is tested with), built from the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
