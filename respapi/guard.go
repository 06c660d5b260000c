package respapi

import (
	"errors"
	"net"
)

// The limits on what a client may send. redcon has none: a multibulk
// count of 2^63 keeps its parser looping for ever, before AUTH, and a bulk
// length is buffered whatever its size. countd's commands take names of at
// most 128 bytes and integers, so its limits are far below Redis's.
const (
	maxArgs    = 64 * 1024 // arguments of one command (Redis: 1,048,576)
	maxBulk    = 512 << 10 // bytes of one argument (Redis: 512 MB)
	maxCommand = 1 << 20   // bytes of one command, framing included
	maxInline  = 64 << 10  // bytes of one inline command (Redis's limit)
	maxDigits  = 20        // digits of a "*n" or "$n" header
)

// guardListener wraps every connection it accepts in a guard.
type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guard{Conn: c}, nil
}

// guard stands between a connection and redcon's parser. It checks the
// RESP framing of what the client sends against the limits above and
// hands redcon whole commands only, so redcon never parses a partial
// command again and again as it arrives (quadratic in its size). A command
// past a limit gets Redis's protocol error, and the connection closes once
// the commands before it have their replies.
type guard struct {
	net.Conn
	back  []byte // where buf lives, reused from read to read
	buf   []byte // read from Conn and not yet given to redcon
	ready int    // buf[:ready] is whole commands
	scan  framing
	// fault is the protocol error of the command at buf[ready:], written
	// to the client once redcon has answered every command before it.
	fault string
}

var errLimit = errors.New("respapi: a client passed a protocol limit")

// Read gives redcon the whole commands read so far, reading more until
// there is at least one.
func (g *guard) Read(p []byte) (int, error) {
	for g.ready == 0 {
		if g.fault != "" {
			g.Conn.Write([]byte("-ERR Protocol error: " + g.fault + "\r\n"))
			return 0, errLimit
		}
		if err := g.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, g.buf[:g.ready])
	g.buf = g.buf[n:]
	g.ready -= n
	return n, nil
}

// fill reads once from the connection and scans what came.
func (g *guard) fill() error {
	if len(g.buf) == cap(g.buf) {
		// No room after what is held: move it to the front of back, or
		// to a back twice its size if it fills half of this one (it
		// grows only while one command is longer: at most maxCommand).
		if len(g.back) == 0 || 2*len(g.buf) > len(g.back) {
			g.back = make([]byte, max(4096, 2*len(g.buf)))
		}
		g.buf = g.back[:copy(g.back, g.buf)]
	}
	n, err := g.Conn.Read(g.buf[len(g.buf):cap(g.buf)])
	from := len(g.buf)
	g.buf = g.buf[:from+n]
	for i := from; i < len(g.buf); i++ {
		complete, msg := g.scan.next(g.buf[i])
		if msg != "" {
			g.buf, g.fault = g.buf[:g.ready], msg
			return nil
		}
		if complete {
			g.ready = i + 1
		}
	}
	if n > 0 {
		return nil
	}
	return err
}

// framing follows the RESP framing of a client's commands, one byte at a
// time, keeping only where it stands in the current command.
type framing struct {
	phase  int
	size   int64 // the count or length being read, then the bytes left
	digits int
	cr     bool  // the header line's '\r' has come
	args   int64 // arguments of the command still to come
	bytes  int   // bytes of the command so far
}

const (
	phaseStart  = iota // before a command
	phaseCount         // in "*n\r\n"
	phaseDollar        // expecting an argument's '$'
	phaseLength        // in "$n\r\n"
	phaseBody          // in an argument and its "\r\n"
	phaseInline        // in an inline command, up to '\n'
)

// next takes the next byte and reports whether it ends a command, or the
// protocol error it makes (Redis's wording).
func (f *framing) next(b byte) (complete bool, msg string) {
	if f.phase == phaseStart {
		f.bytes = 0
	}
	if f.bytes++; f.bytes > maxCommand {
		return false, "command too long for countd"
	}
	switch f.phase {
	case phaseStart:
		switch b {
		case '*':
			f.startHeader(phaseCount)
		case '\n':
			return true, ""
		default:
			f.phase = phaseInline
		}
	case phaseInline:
		if b == '\n' {
			f.phase = phaseStart
			return true, ""
		}
		if f.bytes > maxInline {
			return false, "too big inline request"
		}
	case phaseCount, phaseLength:
		done, ok := f.header(b)
		if !ok {
			if f.phase == phaseCount {
				return false, "invalid multibulk length"
			}
			return false, "invalid bulk length"
		}
		if !done {
			return false, ""
		}
		if f.phase == phaseCount {
			if f.size < 1 || f.size > maxArgs {
				return false, "invalid multibulk length"
			}
			f.args, f.phase = f.size, phaseDollar
			return false, ""
		}
		if f.size > maxBulk {
			return false, "invalid bulk length"
		}
		f.size += 2 // the argument's "\r\n"
		f.phase = phaseBody
	case phaseDollar:
		if b != '$' {
			return false, "expected '$', got '" + clip([]byte{b}) + "'"
		}
		f.startHeader(phaseLength)
	case phaseBody:
		if f.size--; f.size > 0 {
			return false, ""
		}
		if f.args--; f.args > 0 {
			f.phase = phaseDollar
			return false, ""
		}
		f.phase = phaseStart
		return true, ""
	}
	return false, ""
}

// startHeader begins reading a "*n" (phaseCount) or "$n" (phaseLength)
// line after its first byte.
func (f *framing) startHeader(phase int) {
	f.phase, f.size, f.digits, f.cr = phase, 0, 0, false
}

// header takes a byte of a "*n\r\n" or "$n\r\n" line after its first: it
// reports whether the line has ended, and false if it is malformed.
func (f *framing) header(b byte) (done, ok bool) {
	switch {
	case f.cr:
		ended := b == '\n' && f.digits > 0
		return ended, ended
	case b == '\r':
		f.cr = true
		return false, true
	case b >= '0' && b <= '9' && f.digits < maxDigits:
		f.size = f.size*10 + int64(b-'0')
		f.digits++
		return false, f.size <= maxCommand // no count or length above this is valid
	}
	return false, false
}
