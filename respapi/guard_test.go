package respapi

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
)

// chunkConn is a net.Conn whose reads return its input in the given
// chunk sizes (cycled), and whose writes are kept.
type chunkConn struct {
	net.Conn
	in     []byte
	chunks []int
	i      int
	out    bytes.Buffer
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.in), c.chunks[c.i%len(c.chunks)])
	c.i++
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// reads reads g to the end, checking every read that does not fill the
// buffer ends on a command's end (in ends), and returns what it gave and
// the error it ended with.
func reads(t *testing.T, g *guard, ends map[int]bool) ([]byte, error) {
	t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := g.Read(buf)
		got = append(got, buf[:n]...)
		if n > 0 && n < len(buf) && !ends[len(got)] {
			t.Fatalf("a read ended at byte %d, inside a command", len(got))
		}
		if err != nil {
			return got, err
		}
	}
}

// TestGuardGivesWholeCommands: however the bytes arrive (one at a time, in
// odd chunks, all at once), redcon gets every byte, and each read ends
// where a command ends unless the command is longer than the read.
func TestGuardGivesWholeCommands(t *testing.T) {
	var in []byte
	ends := map[int]bool{}
	add := func(s string) {
		in = append(in, s...)
		ends[len(in)] = true
	}
	add("PING\r\n")
	add("*2\r\n$4\r\nINCR\r\n$9\r\nrate:u:42\r\n")
	add("\n")
	add("*1\r\n$0\r\n\r\n")
	var mget strings.Builder
	mget.WriteString("*1001\r\n$4\r\nMGET\r\n")
	for i := range 1000 {
		name := fmt.Sprintf("counter-%d", i)
		fmt.Fprintf(&mget, "$%d\r\n%s\r\n", len(name), name)
	}
	add(mget.String())
	add("*3\r\n$4\r\nECHO\r\n$" + fmt.Sprint(maxBulk) + "\r\n" + strings.Repeat("x", maxBulk) + "\r\n$1\r\n\n\r\n")
	add("INCR a\r\n")
	for _, chunks := range [][]int{{1}, {3, 7, 1, 4096}, {1 << 30}, {2, 65536}} {
		c := &chunkConn{in: in, chunks: chunks}
		got, err := reads(t, &guard{Conn: c}, ends)
		if err != io.EOF {
			t.Fatalf("chunks %v: ended with %v, want EOF", chunks, err)
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("chunks %v: gave %d bytes, want the %d sent", chunks, len(got), len(in))
		}
		if c.out.Len() > 0 {
			t.Fatalf("chunks %v: wrote %q", chunks, c.out.String())
		}
	}
	for range 20 {
		chunks := []int{1 + rand.IntN(100), 1 + rand.IntN(5000)}
		c := &chunkConn{in: in, chunks: chunks}
		if got, err := reads(t, &guard{Conn: c}, ends); err != io.EOF || !bytes.Equal(got, in) {
			t.Fatalf("chunks %v: %d bytes, %v", chunks, len(got), err)
		}
	}
}

// TestGuardRefusesPastTheLimits: each way past a limit gets Redis's
// protocol error, after the replies to the commands before it (which
// redcon still gets), and ends the connection.
func TestGuardRefusesPastTheLimits(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"count of 2^63", "*9223372036854775807\r\n", "invalid multibulk length"},
		{"count past the limit", fmt.Sprintf("*%d\r\n", maxArgs+1), "invalid multibulk length"},
		{"count of 0", "*0\r\n", "invalid multibulk length"},
		{"negative count", "*-1\r\n", "invalid multibulk length"},
		{"count not a number", "*x\r\n", "invalid multibulk length"},
		{"count without CR", "*1\n", "invalid multibulk length"},
		{"bulk of 10^11", "*1\r\n$100000000000\r\n", "invalid bulk length"},
		{"bulk past the limit", fmt.Sprintf("*1\r\n$%d\r\n", maxBulk+1), "invalid bulk length"},
		{"negative bulk", "*1\r\n$-1\r\n", "invalid bulk length"},
		{"no dollar", "*1\r\n:1\r\n", "expected '$', got ':'"},
		{"inline too long", strings.Repeat("x", maxInline+1), "too big inline request"},
		{"command too long", fmt.Sprintf("*3\r\n$1\r\nx\r\n$%d\r\n%s\r\n$%d\r\n%s", maxBulk, strings.Repeat("y", maxBulk), maxBulk, strings.Repeat("z", maxBulk)), "command too long for countd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := "PING\r\n"
			c := &chunkConn{in: []byte(before + tc.in + "PING\r\n"), chunks: []int{1 << 30}}
			got, err := reads(t, &guard{Conn: c}, map[int]bool{len(before): true})
			if err != errLimit {
				t.Fatalf("ended with %v, want the limit", err)
			}
			if string(got) != before {
				t.Fatalf("gave %q, want only the command before", got)
			}
			if want := "-ERR Protocol error: " + tc.want + "\r\n"; c.out.String() != want {
				t.Fatalf("wrote %q, want %q", c.out.String(), want)
			}
		})
	}
}

// FuzzGuard: on any bytes, in any chunks, the guard gives a prefix of
// what came (a command cut off by the end is held back), and the same
// prefix and the same protocol error however the bytes are split.
func FuzzGuard(f *testing.F) {
	f.Add([]byte("PING\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n"), uint8(3))
	f.Add([]byte("*9223372036854775807\r\n"), uint8(1))
	f.Add([]byte("*1\r\n$100000000000\r\n"), uint8(7))
	f.Add([]byte("*1\r\n$-1\r\nINCR a\n\n"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		run := func(chunks []int) ([]byte, string, error) {
			c := &chunkConn{in: bytes.Clone(in), chunks: chunks}
			g := &guard{Conn: c}
			var got []byte
			buf := make([]byte, 512)
			for {
				n, err := g.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					return got, c.out.String(), err
				}
			}
		}
		whole, wout, werr := run([]int{len(in) + 1})
		split, sout, serr := run([]int{1 + int(chunk)})
		if !bytes.HasPrefix(in, whole) {
			t.Fatalf("gave %q, not a prefix of %q", whole, in)
		}
		if !bytes.Equal(whole, split) || werr != serr || wout != sout {
			t.Fatalf("whole: %q %v %q; in chunks of %d: %q %v %q", whole, werr, wout, 1+int(chunk), split, serr, sout)
		}
	})
}
