package respapi

import (
	"errors"
	"fmt"
	"strconv"

	"countd/actors"
	"countd/crdt"
)

// writer is where replies go: a redcon.Conn, or a redcon.Writer in tests.
type writer interface {
	WriteError(msg string)
	WriteString(str string)
	WriteBulk(bulk []byte)
	WriteBulkString(bulk string)
	WriteInt(num int)
	WriteInt64(num int64)
	WriteArray(count int)
	WriteNull()
	WriteRaw(data []byte)
}

// The replies whose bytes never change.
var (
	resp3Null = []byte("_\r\n")
)

// null writes a missing value: RESP2's null bulk string, RESP3's null.
func (c *client) null(w writer) {
	if c.proto == 3 {
		w.WriteRaw(resp3Null)
		return
	}
	w.WriteNull()
}

// nullArray writes a missing array (RESP2 *-1, RESP3 null).
func (c *client) nullArray(w writer) {
	if c.proto == 3 {
		w.WriteRaw(resp3Null)
		return
	}
	w.WriteRaw([]byte("*-1\r\n"))
}

// mapOf writes the header of a map of n pairs: a RESP3 map, or a RESP2
// array of 2n elements, key then value.
func (c *client) mapOf(w writer, n int) {
	if c.proto == 3 {
		c.buf = append(strconv.AppendInt(append(c.buf[:0], '%'), int64(n), 10), '\r', '\n')
		w.WriteRaw(c.buf)
		return
	}
	w.WriteArray(2 * n)
}

// setOf writes the header of a set of n elements: a RESP3 set, or a RESP2
// array.
func (c *client) setOf(w writer, n int) {
	if c.proto == 3 {
		c.buf = append(strconv.AppendInt(append(c.buf[:0], '~'), int64(n), 10), '\r', '\n')
		w.WriteRaw(c.buf)
		return
	}
	w.WriteArray(n)
}

// bulkInt writes n as a bulk string (GET's reply), without allocating.
func (c *client) bulkInt(w writer, n int64) {
	c.buf = strconv.AppendInt(c.buf[:0], n, 10)
	w.WriteBulk(c.buf)
}

// Error replies in Redis's words.
const (
	errSyntax   = "ERR syntax error"
	errNotInt   = "ERR value is not an integer or out of range"
	errOverflow = "ERR increment or decrement would overflow"
	errNoAuth   = "NOAUTH Authentication required."
)

// maxBy is the largest step one change takes, as over HTTP: 2^53.
const maxBy = 1 << 53

// errBy says an INCRBY/DECRBY amount is past what countd changes take.
var errBy = fmt.Sprintf("ERR increment out of range for countd: at most %d either way", maxBy)

// nameError is the reply to a counter name countd refuses.
func nameError(name []byte) string {
	return fmt.Sprintf("ERR invalid counter name '%s': want %s", clip(name), crdt.NameRule)
}

// clip bounds what an error reply quotes of a client's bytes, and keeps
// them on one line (an error reply cannot hold CR or LF).
func clip(b []byte) string {
	const most = 128
	s := b
	if len(s) > most {
		s = s[:most]
	}
	out := make([]byte, 0, len(s)+3)
	for _, ch := range s {
		if ch < ' ' || ch == 0x7f {
			ch = ' '
		}
		out = append(out, ch)
	}
	if len(b) > most {
		out = append(out, "..."...)
	}
	return string(out)
}

// errorReply maps an error from the actors to a Redis error reply.
func errorReply(err error) string {
	switch {
	case errors.Is(err, crdt.ErrOverflow):
		return errOverflow
	case errors.Is(err, crdt.ErrNotFound):
		return "ERR no such key"
	case errors.Is(err, actors.ErrFull):
		return "ERR countd limit reached, nothing changed: " + oneLine(err)
	case errors.Is(err, crdt.ErrInvalid):
		return "ERR " + oneLine(err)
	case errors.Is(err, actors.ErrTimeout):
		return "ERR countd timed out waiting for the commit; the change may or may not have been applied"
	case errors.Is(err, actors.ErrStore):
		return "ERR countd could not write to its store; the change may or may not have been applied"
	case errors.Is(err, actors.ErrStopped):
		return "ERR countd is shutting down"
	}
	return "ERR " + oneLine(err)
}

func oneLine(err error) string { return clip([]byte(err.Error())) }
