package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// writeValue writes the reply shared by every single-counter route,
// {"counter":..., "value":..., "node":...}, without reflection: it is the
// hot path. Counter names need no escaping (they are [A-Za-z0-9._:-]).
func (s *Server) writeValue(w http.ResponseWriter, counter string, v int64, expires uint64) {
	b := make([]byte, 0, 80+len(counter)+len(s.nodeJSON))
	b = append(b, `{"counter":"`...)
	b = append(b, counter...)
	b = append(b, `","value":`...)
	b = strconv.AppendInt(b, v, 10)
	if expires != 0 {
		b = append(b, `,"expires_in":`...)
		b = strconv.AppendInt(b, secondsLeft(expires, time.Now()), 10)
	}
	b = append(b, `,"node":`...)
	b = append(b, s.nodeJSON...)
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	w.Write(b)
}

var jsonContentType = []string{"application/json"}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError answers err as {"error": "..."} with the status statusOf gives.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	switch {
	case status == http.StatusInternalServerError:
		s.log.Error("request failed", "err", err)
	case status >= 500:
		s.log.Debug("request failed", "status", status, "err", err)
	}
	writeErrorJSON(w, status, messageOf(err))
}

func writeErrorJSON(w http.ResponseWriter, status int, msg string) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(append(append(append([]byte(`{"error":`), jsonString(msg)...), '}'), '\n'))
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// jsonSpace is the white space JSON allows between tokens.
const jsonSpace = " \t\r\n"

// checkObject refuses, with a 400, a body that is empty or is not a JSON
// object, before any decoder sees it.
func checkObject(body []byte, form string) error {
	trimmed := bytes.Trim(body, jsonSpace)
	if len(trimmed) == 0 {
		return badRequest("the request body is empty; want %s", form)
	}
	if trimmed[0] != '{' {
		if kind := jsonKind(trimmed); kind != "" {
			return badRequest("the request body must be a JSON object, not %s; want %s", kind, form)
		}
		return badRequest("the request body is not JSON (it starts with %s); want %s", quote(string(trimmed[:1])), form)
	}
	return nil
}

// decodeObject decodes body, which must be one JSON object and nothing
// more, into v, refusing fields v lacks. Its errors are 400s that say, in
// plain words, what is wrong with the body and that form is what is wanted.
func decodeObject(body []byte, v any, form string) error {
	if err := checkObject(body, form); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%s; want %s", describeJSON(err, body), form)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the request body goes on after the JSON object; want %s alone", form)
	}
	return nil
}

// decodeFlat decodes body, which must be one JSON object of plain values
// and nothing more. fields maps each key it may hold (spelt exactly, given
// at most once) to the kind of value the key takes, as jsonKind names it.
// It returns the fields given, each value a json.Number, string or bool.
// Unlike encoding/json, it matches keys exactly ("By" is not "by") and
// refuses a key given twice, so nothing a client sends is silently dropped.
func decodeFlat(body []byte, form string, fields map[string]string) (map[string]any, error) {
	if err := checkObject(body, form); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	bad := func(err error) error {
		// Token's syntax errors give the offset of the token, not of the
		// byte at fault; the whole-body check finds that byte.
		var raw json.RawMessage
		if verr := json.Unmarshal(body, &raw); verr != nil {
			err = verr
		}
		return badRequest("%s; want %s", describeJSON(err, body), form)
	}
	if _, err := dec.Token(); err != nil { // '{', as checkObject saw
		return nil, bad(err)
	}
	got := make(map[string]any, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad(err)
		}
		key, _ := tok.(string) // Token returns an object's keys as strings
		want, known := fields[key]
		if !known {
			return nil, badRequest("unknown field %s; want %s", quote(key), form)
		}
		if _, twice := got[key]; twice {
			return nil, badRequest("field %s is given twice; want %s", quote(key), form)
		}
		if tok, err = dec.Token(); err != nil {
			return nil, bad(err)
		}
		if kind := tokenKind(tok); kind != want {
			return nil, badRequest("field %s must be %s, not %s; want %s", quote(key), want, kind, form)
		}
		got[key] = tok
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, bad(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("the request body goes on after the JSON object; want %s alone", form)
	}
	return got, nil
}

// tokenKind names the kind of a json.Decoder token (with UseNumber) as
// jsonKind does.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case nil:
		return "null"
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	}
	return "JSON"
}

// describeJSON says in plain words why encoding/json refused body.
func describeJSON(err error, body []byte) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body is not valid JSON: it ends in the middle of a value"
	case errors.As(err, &syntax) && strings.Contains(syntax.Error(), "unexpected end"):
		return "the request body is not valid JSON: it ends in the middle of a value"
	case errors.As(err, &syntax):
		if off := syntax.Offset; off >= 1 && off <= int64(len(body)) {
			return fmt.Sprintf("the request body is not valid JSON: unexpected %s at byte %d", quote(string(body[off-1:off])), off)
		}
		return "the request body is not valid JSON"
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("the request body must be %s, not %s", goKind(typ.Type), valueKind(typ.Value))
		}
		return fmt.Sprintf("field %s must be %s, not %s", quote(typ.Field), goKind(typ.Type), valueKind(typ.Value))
	}
	// DisallowUnknownFields has no error type of its own: its text is
	// `json: unknown field "name"`.
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + rest
	}
	return "the request body is not valid JSON"
}

// jsonKind names the kind of the JSON value that b starts with, or returns
// "" if b starts with no JSON value at all.
func jsonKind(b []byte) string {
	b = bytes.TrimLeft(b, jsonSpace)
	if len(b) == 0 {
		return "nothing"
	}
	switch c := b[0]; {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "true or false"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	}
	return ""
}

// valueKind rewrites an UnmarshalTypeError's Value ("string", "bool",
// "number -1", ...) for a client.
func valueKind(v string) string {
	switch {
	case v == "bool":
		return "true or false"
	case strings.HasPrefix(v, "number "):
		n := strings.TrimPrefix(v, "number ")
		if len(n) > 64 {
			n = n[:64] + "…"
		}
		return "the number " + n
	case v == "array", v == "object":
		return "an " + v
	case v == "":
		return "that"
	}
	return "a " + v
}

// goKind names, for a client, the JSON a Go type takes.
func goKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of 0 or more"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another kind of value"
}
