package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The cheap load generator (-client=raw, the default of the load mode):
// one keep-alive TCP connection per client, each request's bytes built
// once per URL and written as they are, and of each answer only the status
// line, Content-Length (and Connection: close) read, the body skipped. No
// net/http client on the hot path, so that the load generator costs the
// machine little and the figures are the server's (issue 15: the net/http
// client burned about as much CPU as the server it measured).

// Load clients.
const (
	clientRaw  = "raw"
	clientHTTP = "http"
)

// maxHeaderLines bounds the header lines of one answer, and maxBody the
// Content-Length the reader accepts: the nodes' answers are small.
const (
	maxHeaderLines = 100
	maxBody        = 1 << 20
)

// rawConn is one client's connection. It is not safe for concurrent use.
type rawConn struct {
	token string      // bearer token each request carries, if not ""
	tls   *tls.Config // nil: plain TCP
	depth int         // requests written before the answers are read (≥ 1)

	host string // host:port connected to, "" when not connected
	conn net.Conn
	br   *bufio.Reader
	wbuf []byte
	reqs map[string][]byte // prepared request by URL, up to the blank line's CRLF
}

// newRawConn returns a client connection that reaches nodes with auth and
// writes depth requests before it reads their answers.
func newRawConn(auth clientAuth, depth int) *rawConn {
	c := &rawConn{token: auth.token, depth: max(1, depth), reqs: make(map[string][]byte)}
	if auth.roots != nil {
		c.tls = auth.tlsConfig()
	}
	return c
}

// close closes the connection, if open.
func (c *rawConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.host = nil, ""
	}
}

// prepared returns the request for url ("http://host:port/path"), less the
// final CRLF, and its host:port, building it on first use.
func (c *rawConn) prepared(url string) (req []byte, host string, err error) {
	if req, ok := c.reqs[url]; ok {
		return req, hostOf(url), nil
	}
	rest, ok := strings.CutPrefix(url, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(url, "https://")
	}
	if !ok {
		return nil, "", fmt.Errorf("url %q: want http:// or https://", url)
	}
	host, path, _ := strings.Cut(rest, "/")
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n", path, host)
	if c.token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", c.token)
	}
	c.reqs[url] = b.Bytes()
	return b.Bytes(), host, nil
}

// hostOf returns the host:port of a URL prepared already.
func hostOf(url string) string {
	_, rest, _ := strings.Cut(url, "://")
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// dial connects to host, over TLS if the client was given a CA.
func (c *rawConn) dial(ctx context.Context, host string) error {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	if c.tls != nil {
		cfg := c.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(host)
		}
		tc := tls.Client(conn, cfg)
		tc.SetDeadline(time.Now().Add(requestTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	c.conn, c.host = conn, host
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

// postBatch sends one POST per URL (each with the Idempotency-Key of the
// same index in keys, if keys is not nil and it is not "") on one
// connection, all written before the first answer is read (pipelined), and
// reads the answers into codes. It returns how many answers came and, if
// fewer than len(urls), what went wrong: apiclient.Classify's arguments
// are codes[i], nil for i < n, and 0, err for the rest. Every URL must
// name the same host.
func (c *rawConn) postBatch(ctx context.Context, urls, keys []string, codes []int) (n int, err error) {
	c.wbuf = c.wbuf[:0]
	host := ""
	for i, u := range urls {
		req, h, err := c.prepared(u)
		if err != nil {
			return 0, err
		}
		host = h
		c.wbuf = append(c.wbuf, req...)
		if keys != nil && keys[i] != "" {
			c.wbuf = append(c.wbuf, "Idempotency-Key: "...)
			c.wbuf = append(c.wbuf, keys[i]...)
			c.wbuf = append(c.wbuf, "\r\n"...)
		}
		c.wbuf = append(c.wbuf, "\r\n"...)
	}
	if c.conn != nil && c.host != host {
		c.close()
	}
	if c.conn == nil {
		if err := c.dial(ctx, host); err != nil {
			return 0, err
		}
	}
	c.conn.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := c.conn.Write(c.wbuf); err != nil {
		c.close()
		return 0, err
	}
	for n < len(urls) {
		code, closing, err := readResponse(c.br)
		if err != nil {
			c.close()
			return n, err
		}
		codes[n] = code
		n++
		if closing {
			c.close()
			if n < len(urls) {
				return n, errors.New("the server closed the connection with requests unanswered")
			}
		}
	}
	return n, nil
}

// readResponse reads one HTTP/1.1 answer from br: the status line; of the
// header lines only Content-Length, Transfer-Encoding and Connection; and
// the body, skipped. It returns the status code and whether the server
// closes the connection after it. A body without a Content-Length (chunked,
// or up to the close) is an error: the load generator's servers never send
// one for these requests.
func readResponse(br *bufio.Reader) (code int, closing bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, fmt.Errorf("status line: %w", err)
	}
	code, closing, err = parseStatusLine(line)
	if err != nil {
		return 0, false, err
	}
	length := int64(-1)
	for i := 0; ; i++ {
		if i == maxHeaderLines {
			return 0, false, errors.New("too many header lines")
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, fmt.Errorf("header: %w", err)
		}
		line = trimEOL(line)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("malformed header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || n > maxBody || (length >= 0 && n != length) {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
			length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			return 0, false, fmt.Errorf("unsupported Transfer-Encoding %q", value)
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				closing = true
			}
		}
	}
	if length < 0 {
		if code == 204 || code == 304 || code/100 == 1 {
			return code, closing, nil
		}
		return 0, false, errors.New("answer without Content-Length")
	}
	if _, err := br.Discard(int(length)); err != nil {
		return 0, false, fmt.Errorf("body: %w", err)
	}
	return code, closing, nil
}

// parseStatusLine parses "HTTP/1.1 200 OK\r\n"; an HTTP/1.0 answer means
// the server closes the connection after it.
func parseStatusLine(line []byte) (code int, closing bool, err error) {
	l := trimEOL(line)
	if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || (l[7] != '0' && l[7] != '1') ||
		l[8] != ' ' || (len(l) > 12 && l[12] != ' ') {
		return 0, false, fmt.Errorf("malformed status line %q", l)
	}
	for _, d := range l[9:12] {
		if d < '0' || d > '9' {
			return 0, false, fmt.Errorf("malformed status line %q", l)
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 {
		return 0, false, fmt.Errorf("malformed status line %q", l)
	}
	return code, l[7] == '0', nil
}

// trimEOL drops a final "\n" or "\r\n".
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// asciiEqualFold reports whether b is s, ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
