package respapi

import (
	"errors"
	"strings"
	"time"

	"countd/actors"
	"countd/crdt"
)

// The counter commands other than the changes (commands.go): GET, MGET,
// EXISTS, DEL, EXPIRE, PEXPIRE, TTL, PTTL, PERSIST.

// names checks every counter name in args; false: it wrote the error.
func (c *client) names(w writer, args [][]byte) ([]string, bool) {
	names := make([]string, len(args))
	for i, a := range args {
		if !crdt.ValidName(string(a)) {
			w.WriteError(nameError(a))
			return nil, false
		}
		names[i] = string(a)
	}
	return names, true
}

func cmdGet(s *Server, c *client, w writer, args [][]byte) bool {
	if !crdt.ValidName(string(args[1])) {
		w.WriteError(nameError(args[1]))
		return false
	}
	v, err := s.cfg.Counters.Lookup(s.ctx, string(args[1]))
	switch {
	case err != nil:
		w.WriteError(errorReply(err))
	case !v.Exists:
		c.null(w)
	default:
		c.bulkInt(w, v.Value)
	}
	return false
}

func cmdMGet(s *Server, c *client, w writer, args [][]byte) bool {
	names, ok := c.names(w, args[1:])
	if !ok {
		return false
	}
	vs, err := s.cfg.Counters.LookupAll(s.ctx, names)
	if err != nil {
		w.WriteError(errorReply(err))
		return false
	}
	w.WriteArray(len(vs))
	for _, v := range vs {
		if v.Exists {
			c.bulkInt(w, v.Value)
		} else {
			c.null(w)
		}
	}
	return false
}

func cmdExists(s *Server, c *client, w writer, args [][]byte) bool {
	names, ok := c.names(w, args[1:])
	if !ok {
		return false
	}
	vs, err := s.cfg.Counters.LookupAll(s.ctx, names)
	if err != nil {
		w.WriteError(errorReply(err))
		return false
	}
	n := 0
	for _, v := range vs {
		if v.Exists {
			n++
		}
	}
	w.WriteInt(n)
	return false
}

// cmdDel deletes each counter named, one delete (and commit) each.
func cmdDel(s *Server, c *client, w writer, args [][]byte) bool {
	names, ok := c.names(w, args[1:])
	if !ok {
		return false
	}
	n := 0
	for _, name := range names {
		deleted, err := s.cfg.Counters.Delete(s.ctx, name)
		if err != nil {
			w.WriteError(errorReply(err))
			return false
		}
		if deleted {
			n++
		}
	}
	w.WriteInt(n)
	return false
}

// maxTTL is the longest expiry countd takes: what a time.Duration holds.
const maxTTL = time.Duration(1<<63 - 1)

func cmdExpire(s *Server, c *client, w writer, args [][]byte) bool {
	return expire(s, c, w, args, time.Second)
}

func cmdPExpire(s *Server, c *client, w writer, args [][]byte) bool {
	return expire(s, c, w, args, time.Millisecond)
}

// expire: EXPIRE|PEXPIRE key ttl [NX|XX|GT|LT], ttl in unit. A ttl of 0
// or less deletes the counter (if the conditions allow), as Redis does.
func expire(s *Server, c *client, w writer, args [][]byte, unit time.Duration) bool {
	if !crdt.ValidName(string(args[1])) {
		w.WriteError(nameError(args[1]))
		return false
	}
	n, ok := parseInt(args[2])
	if !ok {
		w.WriteError(errNotInt)
		return false
	}
	m := actors.Expire{Counter: string(args[1])}
	for _, opt := range args[3:] {
		switch strings.ToLower(string(opt)) {
		case "nx":
			m.NX = true
		case "xx":
			m.XX = true
		case "gt":
			m.GT = true
		case "lt":
			m.LT = true
		default:
			w.WriteError("ERR Unsupported option " + clip(opt))
			return false
		}
	}
	switch {
	case m.NX && (m.XX || m.GT || m.LT):
		w.WriteError("ERR NX and XX, GT or LT options at the same time are not compatible")
		return false
	case m.GT && m.LT:
		w.WriteError("ERR GT and LT options at the same time are not compatible")
		return false
	}
	if n <= 0 {
		m.Past = true
	} else {
		if n > int64(maxTTL/unit) || time.Now().Add(time.Duration(n)*unit).Before(time.Now()) {
			w.WriteError("ERR invalid expire time in '" + strings.ToLower(string(args[0])) + "' command")
			return false
		}
		m.TTL = time.Duration(n) * unit
	}
	r, err := s.cfg.Counters.ExpireWith(s.ctx, m)
	switch {
	case errors.Is(err, crdt.ErrNotFound):
		w.WriteInt(0)
	case err != nil:
		w.WriteError(errorReply(err))
	case r.Set:
		w.WriteInt(1)
	default:
		w.WriteInt(0)
	}
	return false
}

func cmdTTL(s *Server, c *client, w writer, args [][]byte) bool {
	return ttl(s, c, w, args, time.Second)
}

func cmdPTTL(s *Server, c *client, w writer, args [][]byte) bool {
	return ttl(s, c, w, args, time.Millisecond)
}

// ttl: -2 no such counter, -1 no expiry, else the time left in unit,
// rounded as Redis rounds it.
func ttl(s *Server, c *client, w writer, args [][]byte, unit time.Duration) bool {
	if !crdt.ValidName(string(args[1])) {
		w.WriteError(nameError(args[1]))
		return false
	}
	v, err := s.cfg.Counters.Lookup(s.ctx, string(args[1]))
	switch {
	case err != nil:
		w.WriteError(errorReply(err))
	case !v.Exists:
		w.WriteInt(-2)
	case v.Expires == 0:
		w.WriteInt(-1)
	default:
		left := max(int64(v.Expires)-time.Now().UnixMilli(), 0)
		if unit == time.Second {
			left = (left + 500) / 1000
		}
		w.WriteInt64(left)
	}
	return false
}

// cmdPersist removes a counter's expiry: 1 if it had one.
func cmdPersist(s *Server, c *client, w writer, args [][]byte) bool {
	if !crdt.ValidName(string(args[1])) {
		w.WriteError(nameError(args[1]))
		return false
	}
	r, err := s.cfg.Counters.ExpireWith(s.ctx, actors.Expire{Counter: string(args[1])})
	switch {
	case errors.Is(err, crdt.ErrNotFound):
		w.WriteInt(0)
	case err != nil:
		w.WriteError(errorReply(err))
	case r.Set:
		w.WriteInt(1)
	default:
		w.WriteInt(0)
	}
	return false
}
