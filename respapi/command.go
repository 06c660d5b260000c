package respapi

import "strings"

// cmdCommand: COMMAND, COMMAND COUNT, COMMAND INFO [name ...], COMMAND
// DOCS [name ...], COMMAND LIST: what redis-cli and client libraries read
// at start.
func cmdCommand(s *Server, c *client, w writer, args [][]byte) bool {
	if len(args) == 1 {
		w.WriteArray(len(commandList))
		for _, cmd := range commandList {
			c.commandInfo(w, cmd)
		}
		return false
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		if len(args) != 2 {
			w.WriteError("ERR wrong number of arguments for 'command|count' command")
			return false
		}
		w.WriteInt(len(commandList))
	case "list":
		w.WriteArray(len(commandList))
		for _, cmd := range commandList {
			w.WriteBulkString(cmd.name)
		}
	case "info":
		list := named(args[2:])
		w.WriteArray(len(list))
		for _, cmd := range list {
			if cmd == nil {
				c.nullArray(w)
				continue
			}
			c.commandInfo(w, cmd)
		}
	case "docs":
		list := named(args[2:])
		n := 0
		for _, cmd := range list {
			if cmd != nil {
				n++
			}
		}
		c.mapOf(w, n)
		for _, cmd := range list {
			if cmd == nil {
				continue
			}
			w.WriteBulkString(cmd.name)
			c.mapOf(w, 3)
			w.WriteBulkString("summary")
			w.WriteBulkString(cmd.summary)
			w.WriteBulkString("since")
			w.WriteBulkString("1.0.0")
			w.WriteBulkString("group")
			w.WriteBulkString(cmd.group)
		}
	default:
		w.WriteError("ERR unknown subcommand '" + clip(args[1]) + "'. Try COMMAND HELP.")
	}
	return false
}

// named returns the commands named in args (nil for one countd does not
// have), or every command if args is empty.
func named(args [][]byte) []*command {
	if len(args) == 0 {
		return commandList
	}
	out := make([]*command, len(args))
	for i, a := range args {
		out[i] = lookup(a)
	}
	return out
}

// commandInfo writes one command's entry as Redis 7 does: name, arity,
// flags, first key, last key, step, ACL categories, tips, key specs,
// subcommands.
func (c *client) commandInfo(w writer, cmd *command) {
	w.WriteArray(10)
	w.WriteBulkString(cmd.name)
	w.WriteInt(cmd.arity)
	c.setOf(w, len(cmd.flags))
	for _, f := range cmd.flags {
		w.WriteString(f)
	}
	w.WriteInt(cmd.keys[0])
	w.WriteInt(cmd.keys[1])
	w.WriteInt(cmd.keys[2])
	c.setOf(w, 1)
	w.WriteString("@" + cmd.group)
	w.WriteArray(0)
	w.WriteArray(0)
	w.WriteArray(0)
}
