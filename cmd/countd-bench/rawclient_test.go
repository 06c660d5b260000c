package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"countd/internal/apiclient"
)

// TestRawClientBare drives the bare server (a child process) with the raw
// client, one request at a time and pipelined, a fixed number of requests,
// and checks that every one was answered 200 and that the server counted
// exactly as many adds.
func TestRawClientBare(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	y, err := startBare(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close(10 * time.Second)
	const clients, perDepth = 4, 300
	sent := int64(0)
	for _, depth := range []int{1, 3, 16} {
		var conns []*rawConn
		for range clients {
			conns = append(conns, newRawConn(clientAuth{}, depth))
		}
		url := incrementURLs([]string{"http://" + y.addr}, 0)
		st := drive(ctx, driveSpec{clients: clients, url: limited(url, perDepth), raw: conns})
		for _, c := range conns {
			c.close()
		}
		if st.Outcomes.Total() != perDepth || st.Outcomes.OK != perDepth || len(st.Errors) != 0 {
			t.Fatalf("depth %d: %+v, errors %v (%s); want %d OK", depth, st.Outcomes, st.Errors, st.FirstError, perDepth)
		}
		if st.Hist.N != perDepth {
			t.Errorf("depth %d: %d latencies recorded, want %d", depth, st.Hist.N, perDepth)
		}
		sent += perDepth
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	r := apiclient.Client{HTTP: client}.Change("http://"+y.addr, "default", 1)
	if r.Err != nil || r.Status != http.StatusOK {
		t.Fatalf("status %d: %v", r.Status, r.Err)
	}
	if r.Value != sent+1 {
		t.Errorf("the server counted %d adds, want %d", r.Value-1, sent)
	}
}

// TestRawClientRefused checks that a client whose server is gone counts
// its requests as failed (not applied), by kind, and does not hang.
func TestRawClientRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	y, err := startBare(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := y.addr
	if err := y.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c := newRawConn(clientAuth{}, 2)
	defer c.close()
	st := drive(ctx, driveSpec{clients: 1, url: limited(incrementURLs([]string{"http://" + addr}, 0), 4), raw: []*rawConn{c}})
	if st.Outcomes.OK != 0 || st.Outcomes.Total() != 4 || st.Errors["transport"] != 4 {
		t.Errorf("outcomes %+v, errors %v; want 4 transport failures", st.Outcomes, st.Errors)
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		code    int
		closing bool
		rest    string // what must be left unread
		wantErr bool
	}{
		{"ok", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhelloNEXT", 200, false, "NEXT", false},
		{"lower-case header", "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}", 201, false, "", false},
		{"no reason", "HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", 503, false, "", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", 200, false, "", false},
		{"connection close", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbad", 400, true, "", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, true, "", false},
		{"204 without length", "HTTP/1.1 204 No Content\r\n\r\nNEXT", 204, false, "NEXT", false},
		{"value spaces", "HTTP/1.1 200 OK\r\nContent-Length:   2  \r\n\r\nabNEXT", 200, false, "NEXT", false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 200, false, "", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 0, false, "", true},
		{"no length", "HTTP/1.1 200 OK\r\n\r\nbody", 0, false, "", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 0, false, "", true},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false, "", true},
		{"huge length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0, false, "", true},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, false, "", true},
		{"HTTP/2", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n", 0, false, "", true},
		{"letters in code", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", 0, false, "", true},
		{"code below 100", "HTTP/1.1 099 Hm\r\nContent-Length: 0\r\n\r\n", 0, false, "", true},
		{"no space after code", "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n", 0, false, "", true},
		{"header without colon", "HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n", 0, false, "", true},
		{"cut in headers", "HTTP/1.1 200 OK\r\nContent-Len", 0, false, "", true},
		{"empty", "", 0, false, "", true},
		{"too many headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", maxHeaderLines) + "Content-Length: 0\r\n\r\n", 0, false, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			code, closing, err := readResponse(br)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if code != tc.code || closing != tc.closing {
				t.Errorf("got %d, closing %v; want %d, %v", code, closing, tc.code, tc.closing)
			}
			rest := make([]byte, 100)
			n, _ := br.Read(rest)
			if string(rest[:n]) != tc.rest {
				t.Errorf("left %q unread, want %q", rest[:n], tc.rest)
			}
		})
	}
}

// FuzzReadResponse feeds the answer reader arbitrary bytes (it decodes what
// a server sends): it must not panic, must return a status code from 100
// to 999 when it succeeds, and must never read past the body it was told
// of (a second answer appended stays readable).
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 204\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const next = "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(strings.NewReader(string(b) + next))
		code, _, err := readResponse(br)
		if err != nil {
			return
		}
		if code < 100 || code > 999 {
			t.Fatalf("code %d", code)
		}
		// When the input alone is one whole answer (nothing after it),
		// the answer after it must be read intact: the reader took no
		// byte more than the answer's.
		if len(b) >= 4096 {
			return // longer than the reader's buffer: Buffered says too little
		}
		br1 := bufio.NewReader(strings.NewReader(string(b)))
		if _, _, err := readResponse(br1); err != nil || br1.Buffered() != 0 {
			return
		}
		if c2, _, err := readResponse(br); err != nil || c2 != 299 {
			t.Fatalf("the answer after it read as %d, %v", c2, err)
		}
	})
}
