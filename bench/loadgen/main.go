// Command loadgen sends image uploads to the gateway at a fixed concurrency for a fixed
// time and prints one JSON line: request rate, image rate and latency percentiles.
//
// It is written in Go so that the load generator costs the 2-core benchmark machine as
// little CPU as possible; the gateway under test gets the rest.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

type result struct {
	Concurrency     int            `json:"concurrency"`
	ImagesPerReq    int            `json:"images_per_request"`
	WarmupCreated   int            `json:"warmup_created"`
	Seconds         float64        `json:"seconds"`
	Requests        int            `json:"requests"`
	Errors          int            `json:"errors"`
	StatusCounts    map[string]int `json:"status_counts"`
	RequestsPerSec  float64        `json:"requests_per_second"`
	ImagesPerSec    float64        `json:"images_per_second"`
	P50Milliseconds float64        `json:"p50_ms"`
	P90Milliseconds float64        `json:"p90_ms"`
	P99Milliseconds float64        `json:"p99_ms"`
	MaxMilliseconds float64        `json:"max_ms"`
}

type body struct {
	contentType string
	payload     []byte
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/api/v1/predictions", "upload endpoint")
	dir := flag.String("images", "", "directory of image files to upload, in turn")
	concurrency := flag.Int("concurrency", 32, "concurrent clients")
	imagesPerRequest := flag.Int("batch", 1, "images per request")
	duration := flag.Duration("duration", 20*time.Second, "measured time")
	warmup := flag.Duration("warmup", 3*time.Second, "unmeasured time before it")
	flag.Parse()

	bodies, err := buildBodies(*dir, *imagesPerRequest)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, MaxConnsPerHost: *concurrency},
	}
	warmupLatencies := run(client, *url, bodies, *concurrency, *warmup, map[string]int{})
	statuses := map[string]int{}
	latencies := run(client, *url, bodies, *concurrency, *duration, statuses)
	summary := summarise(latencies, statuses, *concurrency, *imagesPerRequest, *duration)
	// Warm-up uploads are stored too: the caller needs them to reconcile the store.
	summary.WarmupCreated = len(warmupLatencies)
	json.NewEncoder(os.Stdout).Encode(summary)
}

// run keeps `concurrency` clients busy for `length`, counts statuses and returns the
// latencies of the 201 (Created) answers.
func run(client *http.Client, url string, bodies []body, concurrency int, length time.Duration,
	statuses map[string]int) []time.Duration {
	deadline := time.Now().Add(length)
	var mu sync.Mutex
	var latencies []time.Duration
	var wg sync.WaitGroup
	for worker := 0; worker < concurrency; worker++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			for i := worker; time.Now().Before(deadline); i += concurrency {
				b := bodies[i%len(bodies)]
				started := time.Now()
				status := post(client, url, b)
				elapsed := time.Since(started)
				mu.Lock()
				statuses[status]++
				if status == "201" {
					latencies = append(latencies, elapsed)
				}
				mu.Unlock()
			}
		}(worker)
	}
	wg.Wait()
	return latencies
}

func post(client *http.Client, url string, b body) string {
	response, err := client.Post(url, b.contentType, bytes.NewReader(b.payload))
	if err != nil {
		return "transport_error"
	}
	io.Copy(io.Discard, response.Body)
	response.Body.Close()
	return fmt.Sprint(response.StatusCode)
}

func buildBodies(dir string, imagesPerRequest int) ([]body, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no image files in %q", dir)
	}
	sort.Strings(paths)
	var bodies []body
	for start := 0; start+imagesPerRequest <= len(paths); start += imagesPerRequest {
		var buffer bytes.Buffer
		form := multipart.NewWriter(&buffer)
		for _, path := range paths[start : start+imagesPerRequest] {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			part, _ := form.CreateFormFile("file", filepath.Base(path))
			part.Write(data)
		}
		form.Close()
		bodies = append(bodies, body{form.FormDataContentType(), buffer.Bytes()})
	}
	if len(bodies) == 0 {
		return nil, fmt.Errorf("fewer than %d images in %q", imagesPerRequest, dir)
	}
	return bodies, nil
}

func summarise(latencies []time.Duration, statuses map[string]int, concurrency, imagesPerRequest int,
	length time.Duration) result {
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	requests := 0
	for _, count := range statuses {
		requests += count
	}
	seconds := length.Seconds()
	return result{
		Concurrency:     concurrency,
		ImagesPerReq:    imagesPerRequest,
		Seconds:         seconds,
		Requests:        requests,
		Errors:          requests - len(latencies),
		StatusCounts:    statuses,
		RequestsPerSec:  float64(len(latencies)) / seconds,
		ImagesPerSec:    float64(len(latencies)*imagesPerRequest) / seconds,
		P50Milliseconds: percentile(latencies, 0.50),
		P90Milliseconds: percentile(latencies, 0.90),
		P99Milliseconds: percentile(latencies, 0.99),
		MaxMilliseconds: percentile(latencies, 1.0),
	}
}

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	index := int(q*float64(len(sorted))+0.5) - 1
	if index < 0 {
		index = 0
	}
	if index >= len(sorted) {
		index = len(sorted) - 1
	}
	return float64(sorted[index].Microseconds()) / 1000
}
