package respapi

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"countd/actors"
	"countd/crdt"
)

// fakeCounters is a Counters in a map. A counter whose name starts with
// "T" times out, so the error paths run too.
type fakeCounters struct {
	values  map[string]int64
	expires map[string]uint64
}

func newFakeCounters() *fakeCounters {
	return &fakeCounters{values: map[string]int64{}, expires: map[string]uint64{}}
}

func (f *fakeCounters) Apply(ctx context.Context, ch actors.Change) (*actors.ChangeResult, error) {
	if strings.HasPrefix(ch.Counter, "T") {
		return nil, actors.ErrTimeout
	}
	if !crdt.ValidName(ch.Counter) || ch.By == 0 || ch.By > maxBy {
		return nil, fmt.Errorf("%w: change %+v reached the actor", crdt.ErrInvalid, ch)
	}
	v := f.values[ch.Counter]
	d := int64(ch.By)
	if ch.Neg {
		d = -d
	}
	if d > 0 && v > 1<<63-1-d || d < 0 && v < -1<<63-d {
		return &actors.ChangeResult{Counter: ch.Counter, Err: crdt.ErrOverflow}, crdt.ErrOverflow
	}
	f.values[ch.Counter] = v + d
	return &actors.ChangeResult{Counter: ch.Counter, Value: v + d}, nil
}

func (f *fakeCounters) ApplyAll(ctx context.Context, chs []actors.Change) ([]actors.ChangeResult, error) {
	out := make([]actors.ChangeResult, len(chs))
	for i, ch := range chs {
		r, err := f.Apply(ctx, ch)
		if r != nil {
			out[i] = *r
		}
		out[i].Err = err
	}
	return out, nil
}

func (f *fakeCounters) Lookup(ctx context.Context, name string) (*actors.CounterValue, error) {
	if strings.HasPrefix(name, "T") {
		return nil, actors.ErrTimeout
	}
	v, ok := f.values[name]
	return &actors.CounterValue{Counter: name, Value: v, Expires: f.expires[name], Exists: ok}, nil
}

func (f *fakeCounters) LookupAll(ctx context.Context, names []string) ([]actors.CounterValue, error) {
	out := make([]actors.CounterValue, len(names))
	for i, n := range names {
		v, err := f.Lookup(ctx, n)
		if err != nil {
			return nil, err
		}
		out[i] = *v
	}
	return out, nil
}

func (f *fakeCounters) All(ctx context.Context) (*actors.AllCounters, error) {
	return &actors.AllCounters{Values: f.values, Expires: f.expires}, nil
}

func (f *fakeCounters) Delete(ctx context.Context, name string) (bool, error) {
	_, ok := f.values[name]
	delete(f.values, name)
	delete(f.expires, name)
	return ok, nil
}

func (f *fakeCounters) ExpireWith(ctx context.Context, m actors.Expire) (*actors.ExpireResult, error) {
	if !crdt.ValidName(m.Counter) || m.TTL < 0 || m.NX && (m.XX || m.GT || m.LT) || m.GT && m.LT {
		return nil, fmt.Errorf("%w: expire %+v reached the actor", crdt.ErrInvalid, m)
	}
	if _, ok := f.values[m.Counter]; !ok {
		return nil, crdt.ErrNotFound
	}
	if m.Past {
		f.Delete(ctx, m.Counter)
		return &actors.ExpireResult{Set: true}, nil
	}
	at := uint64(0)
	if m.TTL > 0 {
		at = uint64(time.Now().Add(m.TTL).UnixMilli())
	}
	f.expires[m.Counter] = at
	return &actors.ExpireResult{Set: true, Value: f.values[m.Counter], Expires: at}, nil
}

func (f *fakeCounters) Names(ctx context.Context) ([]string, error) {
	var out []string
	for n := range f.values {
		out = append(out, n)
	}
	return out, nil
}

type oneToken string

func (t oneToken) Valid(s string) bool { return s == string(t) }

// FuzzCommands runs arbitrary commands (arguments split at 0x00, commands
// at 0x01; a one-byte first argument picks a command of the table) on
// both protocols, with and without a token to give: never a panic, a
// change never reaches the actor malformed (the fake refuses it), and the
// output is exactly one well-formed RESP reply per command.
func FuzzCommands(f *testing.F) {
	for _, seed := range []string{
		"incr\x00a", "incrby\x00a\x00-9223372036854775808", "incrby\x00a\x009007199254740993",
		"incr\x00a\x01incr\x00a\x01get\x00a\x01decrby\x00b\x003", "expire\x00a\x0010\x00gt\x00lt",
		"expire\x00a\x00-1", "pexpire\x00a\x009223372036854775807", "hello\x003\x00auth\x00u\x00tok\x00setname\x00n",
		"scan\x000\x00match\x00*\x00count\x002", "command\x00docs", "command", "command\x00info\x00get\x00nope",
		"info\x00all", "client\x00setinfo\x00lib-name\x00x", "mget\x00a\x00T1", "keys\x00[", "auth\x00tok",
		"reset", "quit\x01ping", "\x00", "set\x00x\x00\r\n", "incr\x00T", "select\x00-0", "echo\x00\r\n",
	} {
		f.Add([]byte(seed))
	}
	names := make([]string, len(commandList))
	for i, c := range commandList {
		names[i] = c.name
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cmds []redcon.Command
		for _, part := range bytes.Split(data, []byte{1}) {
			args := bytes.Split(part, []byte{0})
			if len(args[0]) == 1 && int(args[0][0]) < len(names)*2 {
				args[0] = []byte(names[int(args[0][0])%len(names)])
			}
			cmds = append(cmds, redcon.Command{Args: args})
		}
		for _, proto := range []int{2, 3} {
			for _, tokens := range []TokenChecker{nil, oneToken("tok")} {
				s := NewServer(Config{Counters: newFakeCounters(), Tokens: tokens})
				c := s.newClient()
				c.proto = proto
				var out bytes.Buffer
				w := redcon.NewWriter(&out)
				quit := s.run(c, w, cmds[0], cmds[1:])
				w.Flush()
				want := len(cmds)
				if quit {
					for i, cmd := range cmds {
						if strings.EqualFold(string(cmd.Args[0]), "quit") {
							want = i + 1
							break
						}
					}
				}
				got, err := countReplies(out.Bytes())
				if err != nil {
					t.Fatalf("proto %d, tokens %v: %q gave malformed RESP: %v\n%q", proto, tokens != nil, data, err, out.Bytes())
				}
				if got != want {
					t.Fatalf("proto %d, tokens %v: %q gave %d replies, want %d\n%q", proto, tokens != nil, data, got, want, out.Bytes())
				}
				if bytes.Contains(out.Bytes(), []byte("reached the actor")) {
					t.Fatalf("%q: a malformed request reached the actor: %q", data, out.Bytes())
				}
				s.cancel()
			}
		}
	})
}

// countReplies parses b as a sequence of RESP2/RESP3 values and counts them.
func countReplies(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		rest, err := parseValue(b, 0)
		if err != nil {
			return n, err
		}
		b = rest
		n++
	}
	return n, nil
}

func line(b []byte) (string, []byte, error) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return "", nil, fmt.Errorf("no CRLF")
	}
	if bytes.ContainsAny(b[:i], "\r\n") {
		return "", nil, fmt.Errorf("CR or LF inside a line")
	}
	return string(b[:i]), b[i+2:], nil
}

func parseValue(b []byte, depth int) ([]byte, error) {
	if depth > 10 {
		return nil, fmt.Errorf("nested too deep")
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("missing value")
	}
	typ := b[0]
	l, rest, err := line(b[1:])
	if err != nil {
		return nil, err
	}
	switch typ {
	case '+':
		return rest, nil
	case '-':
		if word, _, _ := strings.Cut(l, " "); word == "" || strings.ToUpper(word) != word {
			return nil, fmt.Errorf("error %q does not start with an upper-case code", l)
		}
		return rest, nil
	case ':':
		_, err := strconv.ParseInt(l, 10, 64)
		return rest, err
	case '_':
		if l != "" {
			return nil, fmt.Errorf("null with %q", l)
		}
		return rest, nil
	case '$':
		k, err := strconv.Atoi(l)
		if err != nil || k < -1 {
			return nil, fmt.Errorf("bulk length %q", l)
		}
		if k == -1 {
			return rest, nil
		}
		if len(rest) < k+2 || string(rest[k:k+2]) != "\r\n" {
			return nil, fmt.Errorf("bulk of %d bytes cut short", k)
		}
		return rest[k+2:], nil
	case '*', '%', '~':
		k, err := strconv.Atoi(l)
		if err != nil || k < -1 || (typ != '*' && k < 0) {
			return nil, fmt.Errorf("aggregate length %q", l)
		}
		if typ == '%' {
			k *= 2
		}
		for range max(k, 0) {
			if rest, err = parseValue(rest, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}

// keepingCounters times out every ApplyAll but keeps the changes it was
// given, as a CounterActor does when the message waits in its mailbox past
// the caller's timeout: it will apply them later, as they then read.
type keepingCounters struct {
	*fakeCounters
	kept [][]actors.Change
}

func (k *keepingCounters) ApplyAll(ctx context.Context, chs []actors.Change) ([]actors.ChangeResult, error) {
	k.kept = append(k.kept, chs)
	return nil, actors.ErrTimeout
}

// TestTimedOutPipelineKeepsItsChanges: after a pipeline's changes time
// out, the next pipeline on the connection must not overwrite them, or the
// late message applies the next pipeline's changes in their place (a
// change counted twice, another never).
func TestTimedOutPipelineKeepsItsChanges(t *testing.T) {
	k := &keepingCounters{fakeCounters: newFakeCounters()}
	s := NewServer(Config{Counters: k})
	defer s.cancel()
	c := s.newClient()
	incrs := func(names ...string) []redcon.Command {
		var cmds []redcon.Command
		for _, n := range names {
			cmds = append(cmds, redcon.Command{Args: [][]byte{[]byte("INCR"), []byte(n)}})
		}
		return cmds
	}
	for _, batch := range [][]redcon.Command{incrs("a", "b"), incrs("c", "d")} {
		var out bytes.Buffer
		w := redcon.NewWriter(&out)
		s.run(c, w, batch[0], batch[1:])
		w.Flush()
		if !strings.Contains(out.String(), "timed out") {
			t.Fatalf("replies %q, want the timeout", out.String())
		}
	}
	if len(k.kept) != 2 {
		t.Fatalf("%d ApplyAll calls, want 2", len(k.kept))
	}
	for i, want := range [][]string{{"a", "b"}, {"c", "d"}} {
		got := []string{k.kept[i][0].Counter, k.kept[i][1].Counter}
		if got[0] != want[0] || got[1] != want[1] {
			t.Errorf("message %d holds %v by the time the actor reads it, want %v", i+1, got, want)
		}
	}
}
