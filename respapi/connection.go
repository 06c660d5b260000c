package respapi

import (
	"bytes"
	"strings"
)

// The connection commands: PING, ECHO, HELLO, AUTH, CLIENT, SELECT, RESET,
// QUIT. They touch only the connection's own state.

// redisVersion is the Redis version whose commands and replies countd
// follows, reported by HELLO and INFO (clients read it to pick features).
const redisVersion = "7.2.0"

const (
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPass    = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
)

func cmdEcho(s *Server, c *client, w writer, args [][]byte) bool {
	w.WriteBulk(args[1])
	return false
}

// cmdAuth: AUTH token, or AUTH user token (any user name: countd's tokens
// have no users).
func cmdAuth(s *Server, c *client, w writer, args [][]byte) bool {
	if len(args) > 3 {
		w.WriteError(errSyntax)
		return false
	}
	if s.cfg.Tokens == nil {
		if len(args) == 2 {
			w.WriteError(errNoPass)
			return false
		}
		w.WriteString("OK")
		return false
	}
	if !s.cfg.Tokens.Valid(string(args[len(args)-1])) {
		w.WriteError(errWrongPass)
		return false
	}
	c.authed = true
	w.WriteString("OK")
	return false
}

// cmdHello: HELLO [protover [AUTH username password] [SETNAME name]].
func cmdHello(s *Server, c *client, w writer, args [][]byte) bool {
	proto := c.proto
	if len(args) > 1 {
		v, ok := parseInt(args[1])
		if !ok {
			w.WriteError("ERR Protocol version is not an integer or out of range")
			return false
		}
		if v != 2 && v != 3 {
			w.WriteError("NOPROTO unsupported protocol version")
			return false
		}
		proto = int(v)
	}
	var name []byte
	setName := false
	authed := c.authed
	for i := 2; i < len(args); i++ {
		more := len(args) - i - 1
		switch {
		case strings.EqualFold(string(args[i]), "auth") && more >= 2:
			if s.cfg.Tokens != nil && !s.cfg.Tokens.Valid(string(args[i+2])) {
				w.WriteError(errWrongPass)
				return false
			}
			authed = true
			i += 2
		case strings.EqualFold(string(args[i]), "setname") && more >= 1:
			name, setName = args[i+1], true
			i++
		default:
			w.WriteError("ERR Syntax error in HELLO option '" + clip(args[i]) + "'")
			return false
		}
	}
	if !authed {
		w.WriteError(errHelloAuth)
		return false
	}
	if setName && !validClientName(name) {
		w.WriteError(errClientName)
		return false
	}
	c.authed, c.proto = true, proto
	if setName {
		c.name = string(name)
	}
	c.mapOf(w, 7)
	w.WriteBulkString("server")
	w.WriteBulkString("countd")
	w.WriteBulkString("version")
	w.WriteBulkString(redisVersion)
	w.WriteBulkString("proto")
	w.WriteInt(c.proto)
	w.WriteBulkString("id")
	w.WriteInt64(c.id)
	w.WriteBulkString("mode")
	w.WriteBulkString("standalone")
	w.WriteBulkString("role")
	w.WriteBulkString("master")
	w.WriteBulkString("modules")
	w.WriteArray(0)
	return false
}

const errClientName = "ERR Client names cannot contain spaces, newlines or special characters."

// validClientName is Redis's rule: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, ch := range name {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

// cmdClient: CLIENT SETNAME|GETNAME|SETINFO|ID.
func cmdClient(s *Server, c *client, w writer, args [][]byte) bool {
	sub := strings.ToLower(string(args[1]))
	wrongArgs := func() { w.WriteError("ERR wrong number of arguments for 'client|" + clip([]byte(sub)) + "' command") }
	switch sub {
	case "id":
		if len(args) != 2 {
			wrongArgs()
			return false
		}
		w.WriteInt64(c.id)
	case "getname":
		if len(args) != 2 {
			wrongArgs()
			return false
		}
		if c.name == "" {
			c.null(w)
			return false
		}
		w.WriteBulkString(c.name)
	case "setname":
		if len(args) != 3 {
			wrongArgs()
			return false
		}
		if !validClientName(args[2]) {
			w.WriteError(errClientName)
			return false
		}
		c.name = string(args[2])
		w.WriteString("OK")
	case "setinfo":
		if len(args) != 4 {
			wrongArgs()
			return false
		}
		if bytes.ContainsAny(args[3], " \r\n") {
			w.WriteError("ERR " + clip(args[2]) + " cannot contain spaces, newlines or special characters.")
			return false
		}
		switch strings.ToLower(string(args[2])) {
		case "lib-name":
			c.lib = string(args[3])
		case "lib-ver":
			c.libVer = string(args[3])
		default:
			w.WriteError("ERR Unrecognized option '" + clip(args[2]) + "'")
			return false
		}
		w.WriteString("OK")
	default:
		w.WriteError("ERR unknown subcommand '" + clip(args[1]) + "'. Try CLIENT HELP.")
	}
	return false
}

// cmdSelect: only database 0 exists.
func cmdSelect(s *Server, c *client, w writer, args [][]byte) bool {
	n, ok := parseInt(args[1])
	switch {
	case !ok:
		w.WriteError(errNotInt)
	case n != 0:
		w.WriteError("ERR DB index is out of range")
	default:
		w.WriteString("OK")
	}
	return false
}

// cmdReset puts the connection back as it was when it opened.
func cmdReset(s *Server, c *client, w writer, args [][]byte) bool {
	c.name, c.lib, c.libVer, c.proto = "", "", "", 2
	c.authed = s.cfg.Tokens == nil
	w.WriteString("RESET")
	return false
}

func cmdQuit(s *Server, c *client, w writer, args [][]byte) bool {
	w.WriteString("OK")
	return true
}
