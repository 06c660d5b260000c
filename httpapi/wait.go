package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"countd/actors"
	"countd/wire"
)

// Levels is what the write and read levels (?wait=) need from the cluster
// (docs/design.md, section 6, "Write and read levels"). actors.Cluster
// implements it.
type Levels interface {
	// WaitHeld returns once enough members hold this node's state at
	// version for the level, or an error wrapping actors.ErrNotReached.
	WaitHeld(ctx context.Context, version uint64, level actors.Level) error
	// ReadCounter reads a counter merged from enough members for the
	// level, or fails with actors.ErrNotReached.
	ReadCounter(ctx context.Context, counter string, level actors.Level) (*actors.CounterValue, error)
	// Entries returns this node's durable entries of a counter, for a
	// peer's read (GET /entries/{name}).
	Entries(ctx context.Context, counter string) (*actors.CounterEntries, error)
}

var _ Levels = (*actors.Cluster)(nil)

// level is a request's ?wait=, and when the request began: the level must
// be reached within -request-timeout of it.
type level struct {
	actors.Level
	start time.Time
}

// parseLevel reads the optional wait parameter: local (the default),
// quorum or all, given at most once.
func parseLevel(q url.Values) (level, error) {
	v, given, err := param(q, "wait")
	if !given || err != nil {
		return level{}, err
	}
	i := slices.Index(actors.Levels, v)
	if i < 0 {
		return level{}, badRequest("wait must be local (this node), quorum (a majority of the members) or all (every member); got %s", quote(v))
	}
	return level{Level: actors.Level(i), start: time.Now()}, nil
}

// levelContext bounds a wait at a level by -request-timeout from the start
// of the request.
func (s *Server) levelContext(r *http.Request, l level) (context.Context, context.CancelFunc) {
	return context.WithDeadline(r.Context(), l.start.Add(s.cfg.RequestTimeout))
}

// awaitLevel waits, after a change made durable here at version, until
// the request's write level is reached. Not reached in time, it is a 504
// that says the change is applied here and will still reach the others.
// A node with no Levels is its only member: every level is reached.
func (s *Server) awaitLevel(r *http.Request, l level, version uint64) error {
	if l.Level == actors.Local || s.cfg.Levels == nil {
		return nil
	}
	ctx, cancel := s.levelContext(r, l)
	defer cancel()
	err := s.cfg.Levels.WaitHeld(ctx, version, l.Level)
	if err == nil || !errors.Is(err, actors.ErrNotReached) {
		return err
	}
	return &clientError{kind: actors.ErrNotReached, msg: fmt.Sprintf(
		"the change is applied and durable on this node, but wait=%s was not reached within the request timeout (-request-timeout): %s; it will still reach the others, so do not send it again as a new change",
		l.Level, reachedOf(err, "held it"))}
}

// readAt reads a counter at the request's read level: local is this
// node's value; quorum and all merge what enough members hold first. Not
// reached in time, it is a 504 with no value.
func (s *Server) readAt(r *http.Request, l level, name string) (*actors.CounterValue, error) {
	if l.Level == actors.Local || s.cfg.Levels == nil {
		return s.cfg.Counters.Lookup(r.Context(), name)
	}
	ctx, cancel := s.levelContext(r, l)
	defer cancel()
	c, err := s.cfg.Levels.ReadCounter(ctx, name, l.Level)
	if err == nil || !errors.Is(err, actors.ErrNotReached) {
		return c, err
	}
	return nil, &clientError{kind: actors.ErrNotReached, msg: fmt.Sprintf(
		"wait=%s was not reached within the request timeout (-request-timeout): %s; nothing was read",
		l.Level, reachedOf(err, "answered"))}
}

// reachedOf says how far a level got, from the *actors.LevelError in err.
func reachedOf(err error, did string) string {
	var le *actors.LevelError
	if !errors.As(err, &le) {
		return "the node did not learn how many members " + did
	}
	members := "members"
	if le.Members == 1 {
		members = "member"
	}
	return fmt.Sprintf("%d of %d %s %s, %d needed", le.Reached, le.Members, members, did, le.Need)
}

// handleEntries serves GET /entries/{name}, a node-to-node read: this
// node's durable entries of one counter, for a read at a level on another
// node.
func (s *Server) handleEntries(w http.ResponseWriter, r *http.Request) {
	name, err := counterName(r)
	if err != nil {
		s.writeError(w, err)
		return
	}
	e, err := s.cfg.Levels.Entries(r.Context(), name)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, &wire.EntriesReply{Node: s.cfg.Node, Replica: e.Replica, Entries: e.Entries})
}
