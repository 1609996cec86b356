// Go's net/http server for the real-servers bench: answers POST /upload with a 413 and
// the page in the file named by its second argument, without reading the body.
//
// Usage: goserver ADDR PAGE
package main

import (
	"net/http"
	"os"
)

func main() {
	page, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	http.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write(page)
	})
	if err := http.ListenAndServe(os.Args[1], nil); err != nil {
		panic(err)
	}
}
