package httpapi

import (
	"bufio"
	"net/http"
	"strconv"
	"time"

	"countd/actors"
)

// streamBuffer is how much of a streamed counters reply is gathered
// before it is written out.
const streamBuffer = 64 << 10

// counterExpiry is a counter that expires, kept while the counters are
// written so that "expires_in" can follow them.
type counterExpiry struct {
	name string
	at   uint64 // unix milliseconds
}

// writtenTo records whether anything reached the ResponseWriter, which
// decides whether a failure can still be answered as an error.
type writtenTo struct {
	w     http.ResponseWriter
	wrote bool
}

func (t *writtenTo) Write(b []byte) (int, error) {
	t.wrote = true
	return t.w.Write(b)
}

// writeCounters streams a 200 JSON reply: prefix (an object's opening and
// its fields before the counters, ending in '{' or ','), then
// "counters":{...} and, if any counter expires, ,"expires_in":{...}, then
// suffix (the rest, from the ',' of a later field or the closing '}').
// The bytes are those json.Marshal gives for a map[string]int64 field and
// an omitempty one (keys in order; names need no escaping: they are
// [A-Za-z0-9._:-]), but the counters are read in chunks (Counters.Range),
// so a million counters are never copied whole. A failure before anything
// is written is answered as an error; after, the connection is cut, so a
// client never takes a short body for a whole one.
func (s *Server) writeCounters(w http.ResponseWriter, r *http.Request, prefix, suffix []byte) {
	now := time.Now()
	out := &writtenTo{w: w}
	bw := bufio.NewWriterSize(out, streamBuffer)
	w.Header()["Content-Type"] = jsonContentType
	bw.Write(prefix)
	bw.WriteString(`"counters":{`)
	var expiring []counterExpiry
	var num []byte
	first := true
	err := s.cfg.Counters.Range(r.Context(), func(c actors.CounterValue) error {
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.WriteByte('"')
		bw.WriteString(c.Counter)
		bw.WriteString(`":`)
		num = strconv.AppendInt(num[:0], c.Value, 10)
		bw.Write(num)
		if c.Expires != 0 {
			expiring = append(expiring, counterExpiry{c.Counter, c.Expires})
		}
		return nil
	})
	if err != nil {
		if !out.wrote {
			s.writeError(w, err)
			return
		}
		s.log.Debug("counters reply cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	bw.WriteByte('}')
	if len(expiring) > 0 {
		bw.WriteString(`,"expires_in":{`)
		for i, e := range expiring {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteByte('"')
			bw.WriteString(e.name)
			bw.WriteString(`":`)
			num = strconv.AppendInt(num[:0], secondsLeft(e.at, now), 10)
			bw.Write(num)
		}
		bw.WriteByte('}')
	}
	bw.Write(suffix)
	bw.WriteByte('\n')
	bw.Flush()
}
