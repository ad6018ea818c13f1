module mnistserving/bench/loadgen

go 1.22
