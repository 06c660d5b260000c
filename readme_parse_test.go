package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// This file reads README.md into the examples TestREADME runs. The README is
// the source: a line of the form
//
//	$ curl -s [-XMETHOD] [-H 'Name: value']... [-d 'BODY'] URL [| grep -E 'RE']    [(NNN ...)]
//
// in an indented block is an example; the indented lines right under it are
// its output, each maybe ending in a status note such as "(400)" or
// "(201; 200 if known)" (the first number is the status; 200 when there is no
// note). A "Name: value" in a note, after a comma ("(405, Allow: POST)"), is
// a header the reply must carry. A line "go run main.go FLAGS" (with or without "$ ") starts a node;
// a run of them after some examples starts a new section on fresh data dirs.
// A line "$ redis-cli -p 6379 ARGS..." is an example too, run with the real
// redis-cli (--no-raw, so its output is what a terminal shows) when it is on
// PATH; the lines under it are its output.
// Ports 8080 to 8099 and 6379 are the README's; the test maps them to free ones.

// readmeSection is a set of nodes and the examples run against them, in
// README order.
type readmeSection struct {
	starts   []readmeStart
	examples []readmeExample
}

// readmeStart is one "go run main.go" line.
type readmeStart struct {
	line int
	args []string // the flags, README ports unmapped
}

// readmeExample is one "$ curl" line and the output under it.
type readmeExample struct {
	line   int    // README line of the curl
	cmd    string // the curl as written, without its comment or note
	method string
	url    string      // as written after curl, e.g. localhost:8080/counter
	body   string      // -d; empty if none
	header http.Header // -H
	// wantHeader are the headers the reply must carry (from the notes).
	wantHeader map[string]string
	grep       *regexp.Regexp
	status     int
	want       []readmeLine // the output; empty means no body
	// cli, if set, makes this a redis-cli example: its arguments after
	// "redis-cli", README ports unmapped.
	cli []string
}

// readmeLine is one expected output line, its status note cut off.
type readmeLine struct {
	line int
	text string
}

var (
	// statusNote is a trailing "(NNN...)" after two or more spaces.
	statusNote = regexp.MustCompile(`\s{2,}\((\d{3})\b([^)]*)\)\s*$`)
	// noteHeader is a ", Name: value" in a status note.
	noteHeader = regexp.MustCompile(`,\s*([A-Z][A-Za-z-]*): ([^,;]+)`)
	// readmePort is a port of the README's examples.
	readmePort = regexp.MustCompile(`\b(?:80[89]\d|6379)\b`)
)

// parseReadme splits the README into sections of nodes and examples.
func parseReadme(text string) ([]readmeSection, error) {
	var (
		out []readmeSection
		cur *readmeSection
		ex  *readmeExample // the example whose output lines come next
	)
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		indented := strings.HasPrefix(raw, "    ") || strings.HasPrefix(raw, "\t")
		line := strings.TrimSpace(raw)
		if !indented || line == "" {
			ex = nil
			continue
		}
		cmd, isCmd := strings.CutPrefix(line, "$ ")
		if rest, ok := strings.CutPrefix(cmd, "go run main.go"); ok {
			ex = nil
			if cur == nil || len(cur.examples) > 0 {
				out = append(out, readmeSection{})
				cur = &out[len(out)-1]
			}
			cur.starts = append(cur.starts, readmeStart{line: n, args: strings.Fields(stripComment(rest))})
			continue
		}
		if isCmd && strings.HasPrefix(cmd, "curl ") {
			if cur == nil {
				return nil, fmt.Errorf("README.md:%d: an example before any go run main.go line", n)
			}
			e, err := parseCurl(n, cmd)
			if err != nil {
				return nil, err
			}
			cur.examples = append(cur.examples, e)
			ex = &cur.examples[len(cur.examples)-1]
			continue
		}
		if isCmd && strings.HasPrefix(cmd, "redis-cli ") {
			if cur == nil {
				return nil, fmt.Errorf("README.md:%d: an example before any go run main.go line", n)
			}
			words, err := shellWords(stripComment(cmd))
			if err != nil {
				return nil, fmt.Errorf("README.md:%d: %v", n, err)
			}
			cur.examples = append(cur.examples, readmeExample{line: n, cmd: cmd, cli: words[1:]})
			ex = &cur.examples[len(cur.examples)-1]
			continue
		}
		if isCmd || ex == nil {
			ex = nil
			continue
		}
		text := line
		if m := statusNote.FindStringSubmatchIndex(line); m != nil {
			ex.status, _ = strconv.Atoi(line[m[2]:m[3]])
			for _, h := range noteHeader.FindAllStringSubmatch(line[m[4]:m[5]], -1) {
				if ex.wantHeader == nil {
					ex.wantHeader = map[string]string{}
				}
				ex.wantHeader[h[1]] = strings.TrimSpace(h[2])
			}
			text = strings.TrimSpace(line[:m[0]])
		}
		ex.want = append(ex.want, readmeLine{line: n, text: text})
	}
	return out, nil
}

// parseCurl reads the curl command of README line n.
func parseCurl(n int, cmd string) (readmeExample, error) {
	e := readmeExample{line: n, status: 200}
	cmd = stripComment(cmd)
	if m := statusNote.FindStringSubmatchIndex(cmd); m != nil {
		e.status, _ = strconv.Atoi(cmd[m[2]:m[3]])
		cmd = strings.TrimSpace(cmd[:m[0]])
	}
	e.cmd = cmd
	words, err := shellWords(cmd)
	if err != nil {
		return e, fmt.Errorf("README.md:%d: %v", n, err)
	}
	bad := func(format string, args ...any) (readmeExample, error) {
		return e, fmt.Errorf("README.md:%d: %s (TestREADME reads only the curl forms it knows; teach it this one)", n, fmt.Sprintf(format, args...))
	}
	words = words[1:] // curl
	for len(words) > 0 {
		w := words[0]
		words = words[1:]
		switch {
		case w == "-s":
		case w == "-X" || w == "-d" || w == "-H":
			if len(words) == 0 {
				return bad("%s without a value", w)
			}
			switch w {
			case "-X":
				e.method = words[0]
			case "-d":
				e.body = words[0]
			default:
				name, value, ok := strings.Cut(words[0], ":")
				if !ok {
					return bad("-H %q is not Name: value", words[0])
				}
				if e.header == nil {
					e.header = http.Header{}
				}
				e.header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
			}
			words = words[1:]
		case strings.HasPrefix(w, "-X"):
			e.method = w[2:]
		case w == "|":
			if len(words) != 3 || words[0] != "grep" || words[1] != "-E" {
				return bad("a pipe other than | grep -E 'RE'")
			}
			if e.grep, err = regexp.Compile(words[2]); err != nil {
				return bad("grep pattern: %v", err)
			}
			words = nil
		case strings.HasPrefix(w, "-"):
			return bad("curl flag %s", w)
		case e.url != "":
			return bad("a second URL %q", w)
		default:
			e.url = w
		}
	}
	if e.url == "" {
		return bad("no URL")
	}
	if e.method == "" {
		e.method = "GET"
		if e.body != "" {
			e.method = "POST" // as curl does for -d
		}
	}
	return e, nil
}

// stripComment cuts a shell comment (" # ...") off a command line.
func stripComment(s string) string {
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return strings.TrimSpace(s[:i])
		}
	}
	return strings.TrimSpace(s)
}

// shellWords splits a command line as a POSIX shell would for the simple
// forms the README uses: words, 'single' and "double" quotes, and |.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '|' && !in:
			words = append(words, "|")
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unclosed %c", c)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += 1 + j
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
