// Package logsink collects the log lines of the nodes an in-process test
// cluster runs, so that a failing test can show what they did.
package logsink

import (
	"bytes"
	"log/slog"
	"sync"
)

// Sink keeps log lines. Max bounds how many it keeps (the newest); 0 keeps
// all. It is safe for concurrent use.
type Sink struct {
	Max int

	mu    sync.Mutex
	lines []string
	buf   []byte
}

// Logger returns a debug-level logger writing into the sink, each line
// tagged n=name.
func (s *Sink) Logger(name string) *slog.Logger {
	h := slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h).With("n", name)
}

// Write implements io.Writer; slog writes whole lines.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		s.lines = append(s.lines, string(s.buf[:i]))
		s.buf = s.buf[i+1:]
	}
	if s.Max > 0 && len(s.lines) > 2*s.Max { // trim now and then, not on every line
		s.lines = append(s.lines[:0:0], s.lines[len(s.lines)-s.Max:]...)
	}
	return len(p), nil
}

// Last returns the newest n lines kept (all of them if n <= 0) and how many
// are kept in all.
func (s *Sink) Last(n int) (lines []string, kept int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines = s.lines
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return append([]string(nil), lines...), len(s.lines)
}
