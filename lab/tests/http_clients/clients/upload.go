// Go net/http client: uploads BODY to URL RUNS times, one after the other.
//
// Usage: upload URL BODY OUTDIR RUNS [CAFILE]
// With a CA file it speaks TLS and takes HTTP/2 where the server offers it (ALPN).
// Prints "<run> <status> <seconds> <head seconds> <protocol>" per upload (the time to
// the whole response, and to its head) and
// writes the body to OUTDIR/<run>, or prints "<run> ERR <what>". The transport writes
// the body in its own goroutine and reads the response meanwhile.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	url, bodyPath, out := os.Args[1], os.Args[2], os.Args[3]
	runs, _ := strconv.Atoi(os.Args[4])
	body, err := os.ReadFile(bodyPath)
	if err != nil {
		panic(err)
	}
	tr := &http.Transport{ForceAttemptHTTP2: true}
	if len(os.Args) > 5 {
		pem, err := os.ReadFile(os.Args[5])
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for run := 0; run < runs; run++ {
		start := time.Now()
		res, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			fmt.Println(run, "ERR", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		head := time.Since(start).Seconds()
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			fmt.Println(run, "ERR", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		took := time.Since(start).Seconds()
		if err := os.WriteFile(fmt.Sprintf("%s/%d", out, run), got, 0o644); err != nil {
			panic(err)
		}
		fmt.Println(run, res.StatusCode, took, head, res.Proto)
	}
}
