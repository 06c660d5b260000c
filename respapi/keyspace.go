package respapi

import (
	"cmp"
	"path"
	"slices"
	"strconv"
	"strings"
)

// The keyspace commands: SCAN, KEYS, DBSIZE.

// globMatch is Redis's glob: '*', '?', '[abc]', '[^a-c]' and '\'
// escapes. path.Match has the same syntax, and its one difference, that
// '*' and '?' do not match '/', cannot show: names hold no '/'. A
// malformed pattern matches nothing.
func globMatch(name, pattern string) bool {
	ok, err := path.Match(pattern, name)
	return ok && err == nil
}

// scanCount is SCAN's default COUNT, as Redis's.
const scanCount = 10

// nameHash is the 64-bit FNV-1a hash of a name: SCAN's order.
func nameHash(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h
}

// cmdScan: SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. Counters are
// visited in order of nameHash, and the cursor is the hash to go on from
// (0: the start, and the end), so a counter that exists for the whole
// scan is returned, whatever is created or deleted meanwhile, as Redis
// guarantees; names sharing a hash are returned together.
func cmdScan(s *Server, c *client, w writer, args [][]byte) bool {
	cursor, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		w.WriteError("ERR invalid cursor")
		return false
	}
	pattern, count, typ := "", scanCount, ""
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			w.WriteError(errSyntax)
			return false
		}
		switch strings.ToLower(string(args[i])) {
		case "match":
			pattern = string(args[i+1])
		case "count":
			n, ok := parseInt(args[i+1])
			if !ok {
				w.WriteError(errNotInt)
				return false
			}
			if n < 1 {
				w.WriteError(errSyntax)
				return false
			}
			count = int(min(n, 1<<20))
		case "type":
			typ = strings.ToLower(string(args[i+1]))
		default:
			w.WriteError(errSyntax)
			return false
		}
	}
	names, err := s.cfg.Counters.Names(s.ctx)
	if err != nil {
		w.WriteError(errorReply(err))
		return false
	}
	type hashed struct {
		h    uint64
		name string
	}
	ahead := make([]hashed, 0, len(names))
	for _, n := range names {
		if h := nameHash(n); h >= cursor {
			ahead = append(ahead, hashed{h, n})
		}
	}
	slices.SortFunc(ahead, func(a, b hashed) int { return cmp.Or(cmp.Compare(a.h, b.h), strings.Compare(a.name, b.name)) })
	end := min(count, len(ahead))
	for end < len(ahead) && end > 0 && ahead[end].h == ahead[end-1].h {
		end++ // never split names of one hash across two calls
	}
	next := uint64(0)
	if end < len(ahead) {
		next = ahead[end].h
	}
	var keys []string
	for _, a := range ahead[:end] {
		if (pattern == "" || globMatch(a.name, pattern)) && (typ == "" || typ == "string") {
			keys = append(keys, a.name)
		}
	}
	w.WriteArray(2)
	w.WriteBulkString(strconv.FormatUint(next, 10))
	w.WriteArray(len(keys))
	for _, k := range keys {
		w.WriteBulkString(k)
	}
	return false
}

// cmdKeys: KEYS pattern, in order of name.
func cmdKeys(s *Server, c *client, w writer, args [][]byte) bool {
	names, err := s.cfg.Counters.Names(s.ctx)
	if err != nil {
		w.WriteError(errorReply(err))
		return false
	}
	pattern := string(args[1])
	keys := names[:0]
	for _, n := range names {
		if globMatch(n, pattern) {
			keys = append(keys, n)
		}
	}
	slices.Sort(keys)
	w.WriteArray(len(keys))
	for _, k := range keys {
		w.WriteBulkString(k)
	}
	return false
}

func cmdDBSize(s *Server, c *client, w writer, args [][]byte) bool {
	names, err := s.cfg.Counters.Names(s.ctx)
	if err != nil {
		w.WriteError(errorReply(err))
		return false
	}
	w.WriteInt(len(names))
	return false
}
