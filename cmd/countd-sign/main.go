// Command countd-sign prints the signature header that lets an operator
// send a node-to-node or membership request (POST /peers, DELETE
// /peers/{addr}, /debug/pprof/) to nodes that have a cluster key, with curl:
//
//	curl -H "$(countd-sign -cluster-key-file=cluster.key POST /peers '{"addr":"10.0.0.4:8080"}')" \
//	    -XPOST 10.0.0.1:8080/peers -d '{"addr":"10.0.0.4:8080"}'
//
// It signs with the first key of the file, at the current time; the header
// is good for auth.Window either way of the node's clock. The path must be
// written as curl sends it (with its query, if any); the body must be
// byte for byte what curl sends.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"countd/auth"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, time.Now()))
}

const usage = "usage: countd-sign -cluster-key-file=PATH METHOD PATH [BODY]"

// run prints the header line for the request args name; 2 on bad use.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, now time.Time) int {
	fs := flag.NewFlagSet("countd-sign", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("cluster-key-file", getenv("COUNTD_CLUSTER_KEY_FILE"), "file of cluster keys; the first signs")
	if err := fs.Parse(args); err != nil || fs.NArg() < 2 || fs.NArg() > 3 || *keyFile == "" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	keys, err := auth.Load(*keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "countd-sign:", strings.TrimPrefix(err.Error(), "auth: "))
		return 2
	}
	method, path, body := strings.ToUpper(fs.Arg(0)), fs.Arg(1), fs.Arg(2)
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintf(stderr, "countd-sign: the path %q must start with /, as in /peers\n", path)
		return 2
	}
	req, err := http.NewRequest(method, "http://countd"+path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "countd-sign:", err)
		return 2
	}
	keys.Sign(req, []byte(body), now)
	fmt.Fprintf(stdout, "%s: %s\n", auth.Header, req.Header.Get(auth.Header))
	return 0
}
