package bare

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
)

// Syncing is the durable yardstick: the bare handler, except that each add is
// answered only once it is on disk, the cheapest way there is. One goroutine
// writes the value into the first 4 KiB of a preallocated file and calls
// fdatasync; every request that arrived while the previous write was in
// flight waits for the next one (group commit). No allocation, no metadata
// change, one flush per batch: any store that survives power loss pays at
// least this, so countd's durable ratio to it says what countd's own code
// costs, apart from the disk and the machine's cost of waiting for one.
type Syncing struct {
	f     *os.File
	value atomic.Int64
	reqs  chan chan error
	quit  chan struct{}
	done  sync.WaitGroup
}

// NewSyncing creates (or truncates) the file at path and starts the writer.
// Close stops it.
func NewSyncing(path string) (*Syncing, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bare: %w", err)
	}
	page := make([]byte, 4096)
	if _, err = f.WriteAt(page, 0); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bare: %w", err)
	}
	s := &Syncing{f: f, reqs: make(chan chan error, 1024), quit: make(chan struct{})}
	s.done.Add(1)
	go s.write(page)
	return s, nil
}

// Handler answers POST-anything like Handler, once the new value is durable.
func (s *Syncing) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		v := s.value.Add(1)
		if err := s.durable(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		reply(w, v)
	})
}

var errClosed = errors.New("bare: closed")

// durable returns once a write covering every add made before the call is
// on disk, or why none will be.
func (s *Syncing) durable() error {
	ch := make(chan error, 1)
	select {
	case s.reqs <- ch:
	case <-s.quit:
		return errClosed
	}
	select {
	case err := <-ch:
		return err
	case <-s.quit:
		return errClosed
	}
}

// write is the writer goroutine: it takes every waiting request, writes and
// flushes the value once, and answers them all.
func (s *Syncing) write(page []byte) {
	defer s.done.Done()
	var batch []chan error
	for {
		select {
		case ch := <-s.reqs:
			batch = append(batch[:0], ch)
		case <-s.quit:
			return
		}
	gather:
		for {
			select {
			case ch := <-s.reqs:
				batch = append(batch, ch)
			default:
				break gather
			}
		}
		// Every request in the batch added before it was sent, so the
		// value read now covers them all.
		binary.BigEndian.PutUint64(page, uint64(s.value.Load()))
		_, err := s.f.WriteAt(page, 0)
		if err == nil {
			err = fdatasync(s.f)
		}
		for _, ch := range batch {
			ch <- err
		}
	}
}

// Close stops the writer and closes the file; requests still waiting are
// answered 503.
func (s *Syncing) Close() error {
	close(s.quit)
	s.done.Wait()
	return s.f.Close()
}
