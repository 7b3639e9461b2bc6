// Command reqlog is the logging proxy of bench/push.sh: a reverse proxy on
// 127.0.0.1 in front of a registry that writes one line, METHOD PATH, per
// request to a file, so that every client is counted the same way.
//
//	reqlog -target 127.0.0.1:5000 -log requests.txt
//
// It prints the address it listens on, then serves until killed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
)

func main() {
	target := flag.String("target", "", "the registry, HOST:PORT")
	logPath := flag.String("log", "", "the file to append METHOD PATH lines to")
	flag.Parse()
	if *target == "" || *logPath == "" {
		fmt.Fprintln(os.Stderr, "reqlog: give -target HOST:PORT and -log FILE")
		os.Exit(2)
	}
	f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatalf("reqlog: %v", err)
	}
	w := bufio.NewWriter(f)
	var mu sync.Mutex
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: *target})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("reqlog: %v", err)
	}
	fmt.Println(l.Addr())
	// The registry builds Location headers from Host: the proxy's is
	// kept, so that clients come back through it.
	log.Fatal(http.Serve(l, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fmt.Fprintf(w, "%s %s\n", r.Method, r.URL.Path)
		w.Flush()
		mu.Unlock()
		rp.ServeHTTP(rw, r)
	})))
}
