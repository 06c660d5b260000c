package respapi

import (
	"strings"

	"github.com/tidwall/redcon"

	"countd/actors"
	"countd/crdt"
)

// command is one Redis command countd has.
type command struct {
	name string
	// arity is Redis's: n means exactly n words with the name, -n at least n.
	arity int
	// noAuth commands run before AUTH when tokens are set (Redis's
	// no-auth flag: AUTH, HELLO, QUIT, RESET).
	noAuth bool
	// change, if set, makes the command a client change that a pipeline
	// batches (INCR, INCRBY, DECR, DECRBY); its reply is the new value.
	change func(args [][]byte) (actors.Change, string)
	// run runs any other command; it returns true to close the connection
	// after the replies (QUIT).
	run func(s *Server, c *client, w writer, args [][]byte) bool
	// flags, keys and group describe the command to COMMAND, in Redis's
	// words: keys are the first key's place, the last's (-1: the last
	// argument) and the step between them; none is 0, 0, 0.
	flags   []string
	keys    [3]int
	group   string
	summary string
}

// commands maps a command's lower-case name to it.
var commands map[string]*command

// The flags of COMMAND's replies.
var (
	write    = []string{"write", "denyoom", "fast"}
	readonly = []string{"readonly", "fast"}
	conn     = []string{"noscript", "loading", "stale", "fast"}
	noAuth   = []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}
	one      = [3]int{1, 1, 1}
	many     = [3]int{1, -1, 1}
)

// commandList is every command, in the order COMMAND lists them; set in
// init (COMMAND reads it).
var commandList []*command

func init() {
	commandList = allCommands()
	commands = make(map[string]*command, len(commandList))
	for _, cmd := range commandList {
		commands[cmd.name] = cmd
	}
}

func allCommands() []*command {
	return []*command{
		{name: "ping", arity: -1, run: cmdPing, flags: conn, group: "connection", summary: "Returns the server's liveliness response."},
		{name: "echo", arity: 2, run: cmdEcho, flags: conn, group: "connection", summary: "Returns the given string."},
		{name: "hello", arity: -1, run: cmdHello, noAuth: true, flags: noAuth, group: "connection", summary: "Handshakes with the server: protocol 2 or 3, AUTH (a client token), SETNAME."},
		{name: "auth", arity: -2, run: cmdAuth, noAuth: true, flags: noAuth, group: "connection", summary: "Authenticates the connection with a client token of -client-token-file."},
		{name: "client", arity: -2, run: cmdClient, flags: conn, group: "connection", summary: "CLIENT ID, GETNAME, SETNAME, SETINFO."},
		{name: "select", arity: 2, run: cmdSelect, flags: conn, group: "connection", summary: "Selects database 0, the only one."},
		{name: "reset", arity: 1, run: cmdReset, noAuth: true, flags: noAuth, group: "connection", summary: "Resets the connection."},
		{name: "quit", arity: -1, run: cmdQuit, noAuth: true, flags: noAuth, group: "connection", summary: "Closes the connection."},
		{name: "command", arity: -1, run: cmdCommand, flags: []string{"loading", "stale"}, group: "server", summary: "Returns information about countd's commands."},
		{name: "incr", arity: 2, change: changeOf(false, false), flags: write, keys: one, group: "string", summary: "Increments a counter by 1, once durable."},
		{name: "decr", arity: 2, change: changeOf(true, false), flags: write, keys: one, group: "string", summary: "Decrements a counter by 1, once durable."},
		{name: "incrby", arity: 3, change: changeOf(false, true), flags: write, keys: one, group: "string", summary: "Increments a counter by a number (at most 2^53 either way), once durable."},
		{name: "decrby", arity: 3, change: changeOf(true, true), flags: write, keys: one, group: "string", summary: "Decrements a counter by a number (at most 2^53 either way), once durable."},
		{name: "get", arity: 2, run: cmdGet, flags: readonly, keys: one, group: "string", summary: "Returns a counter's value."},
		{name: "mget", arity: -2, run: cmdMGet, flags: readonly, keys: many, group: "string", summary: "Returns the values of counters."},
		{name: "exists", arity: -2, run: cmdExists, flags: readonly, keys: many, group: "generic", summary: "Counts the counters named that exist."},
		{name: "del", arity: -2, run: cmdDel, flags: []string{"write"}, keys: many, group: "generic", summary: "Deletes counters, once durable."},
		{name: "expire", arity: -3, run: cmdExpire, flags: []string{"write", "fast"}, keys: one, group: "generic", summary: "Sets a counter's expiry in seconds (NX, XX, GT, LT)."},
		{name: "pexpire", arity: -3, run: cmdPExpire, flags: []string{"write", "fast"}, keys: one, group: "generic", summary: "Sets a counter's expiry in milliseconds (NX, XX, GT, LT)."},
		{name: "ttl", arity: 2, run: cmdTTL, flags: readonly, keys: one, group: "generic", summary: "Returns a counter's time to live in seconds."},
		{name: "pttl", arity: 2, run: cmdPTTL, flags: readonly, keys: one, group: "generic", summary: "Returns a counter's time to live in milliseconds."},
		{name: "persist", arity: 2, run: cmdPersist, flags: []string{"write", "fast"}, keys: one, group: "generic", summary: "Removes a counter's expiry."},
		{name: "scan", arity: -2, run: cmdScan, flags: []string{"readonly"}, group: "generic", summary: "Iterates over the counters' names."},
		{name: "keys", arity: 2, run: cmdKeys, flags: []string{"readonly"}, group: "generic", summary: "Returns the counters' names that match a pattern."},
		{name: "dbsize", arity: 1, run: cmdDBSize, flags: readonly, group: "server", summary: "Returns the number of counters."},
		{name: "info", arity: -1, run: cmdInfo, flags: []string{"loading", "stale"}, group: "server", summary: "Returns information about the node: server, clients, replication (its peers), keyspace."},
	}
}

// lookup finds the command named by name, in any case, without allocating.
func lookup(name []byte) *command {
	var low [16]byte
	if len(name) > len(low) {
		return nil
	}
	for i, ch := range name {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		low[i] = ch
	}
	return commands[string(low[:len(name)])]
}

// run runs first and then rest (what the connection had buffered behind
// it), writing each reply in order. A run of consecutive changes goes to
// the CounterActor as one message, committed together; any other command
// first waits for the changes before it. It returns true after QUIT.
func (s *Server) run(c *client, w writer, first redcon.Command, rest []redcon.Command) bool {
	c.changes = c.changes[:0]
	for i := -1; i < len(rest); i++ {
		args := first.Args
		if i >= 0 {
			args = rest[i].Args
		}
		if len(args) == 0 {
			continue
		}
		cmd := lookup(args[0])
		if cmd != nil && cmd.change != nil && c.authed && arityOK(cmd, len(args)) {
			if ch, bad := cmd.change(args); bad == "" {
				s.cfg.Metrics.RESPCommand(cmd.name)
				c.changes = append(c.changes, ch)
				continue
			}
		}
		s.applyChanges(c, w)
		if s.one(c, w, cmd, args) {
			return true
		}
	}
	s.applyChanges(c, w)
	return false
}

// applyChanges sends the gathered run of changes and writes their replies.
func (s *Server) applyChanges(c *client, w writer) {
	switch len(c.changes) {
	case 0:
		return
	case 1:
		r, err := s.cfg.Counters.Apply(s.ctx, c.changes[0])
		if err != nil {
			w.WriteError(errorReply(err))
		} else {
			w.WriteInt64(r.Value)
		}
	default:
		rs, err := s.cfg.Counters.ApplyAll(s.ctx, c.changes)
		for i := range c.changes {
			switch {
			case err != nil:
				w.WriteError(errorReply(err))
			case rs[i].Err != nil:
				w.WriteError(errorReply(rs[i].Err))
			default:
				w.WriteInt64(rs[i].Value)
			}
		}
		if err != nil {
			// The message may still wait in the actor's mailbox (a
			// timeout) and will be applied as it then reads: the next
			// pipeline must not refill the slice it holds.
			c.changes = nil
			return
		}
	}
	c.changes = c.changes[:0]
}

// one runs a command that is not part of a run of changes.
func (s *Server) one(c *client, w writer, cmd *command, args [][]byte) bool {
	if cmd == nil {
		s.cfg.Metrics.RESPCommand("unknown")
		if !c.authed {
			w.WriteError(errNoAuth)
			return false
		}
		w.WriteError(unknownCommand(args))
		return false
	}
	s.cfg.Metrics.RESPCommand(cmd.name)
	switch {
	case !c.authed && !cmd.noAuth:
		w.WriteError(errNoAuth)
	case !arityOK(cmd, len(args)):
		w.WriteError("ERR wrong number of arguments for '" + cmd.name + "' command")
	case cmd.change != nil:
		_, bad := cmd.change(args)
		w.WriteError(bad)
	default:
		return cmd.run(s, c, w, args)
	}
	return false
}

func arityOK(cmd *command, n int) bool {
	if cmd.arity >= 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// unknownCommand is Redis's reply to a command it does not have.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(clip(args[0]))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		if b.Len() > 256 {
			break
		}
		b.WriteByte('\'')
		b.WriteString(clip(a))
		b.WriteString("' ")
	}
	return b.String()
}

// changeOf returns the parser of INCR (neg false, amount false), DECR,
// INCRBY (amount true) or DECRBY. It returns the reply to a bad command.
func changeOf(neg, amount bool) func(args [][]byte) (actors.Change, string) {
	return func(args [][]byte) (actors.Change, string) {
		if !crdt.ValidName(string(args[1])) {
			return actors.Change{}, nameError(args[1])
		}
		ch := actors.Change{Counter: string(args[1]), By: 1, Neg: neg}
		if !amount {
			return ch, ""
		}
		n, ok := parseInt(args[2])
		if !ok {
			return ch, errNotInt
		}
		if n < 0 {
			if n == minInt64 {
				return ch, errBy
			}
			n, ch.Neg = -n, !neg
		}
		if n > maxBy {
			return ch, errBy
		}
		if n == 0 {
			return ch, errZero
		}
		ch.By = uint64(n)
		return ch, ""
	}
}

// errZero refuses INCRBY 0: countd's changes are 1 or more.
const errZero = "ERR increment of 0 is not a change in countd; GET reads the value"

const minInt64 = -1 << 63

// parseInt parses a whole number as Redis does (string2ll): an optional
// '-', then digits without a leading zero, fitting in 64 bits; no
// allocation.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		d := uint64(ch - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	switch {
	case neg && v <= 1<<63:
		return -int64(v-1) - 1, true
	case !neg && v < 1<<63:
		return int64(v), true
	}
	return 0, false
}

func cmdPing(s *Server, c *client, w writer, args [][]byte) bool {
	switch len(args) {
	case 1:
		w.WriteString("PONG")
	case 2:
		w.WriteBulk(args[1])
	default:
		w.WriteError("ERR wrong number of arguments for 'ping' command")
	}
	return false
}
