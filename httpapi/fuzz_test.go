package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"countd/crdt"
)

func FuzzParseBy(f *testing.F) {
	for _, s := range []string{
		"1", "2", "10", "007", pow53Text, pow53Plus1, maxI64Plus1, maxU64Text, pow64Text,
		"0", "00", "-1", "1.5", "1e3", "abc", "", " 1", "1 ", "+1", "0x10", "١",
		strings.Repeat("9", 32), strings.Repeat("0", 31) + "1", strings.Repeat("0", 32) + "1",
	} {
		f.Add(s)
	}
	maxByInt := new(big.Int).SetUint64(maxBy)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBy(s)
		if err != nil {
			if !errors.Is(err, errBadRequest) || statusOf(err) != http.StatusBadRequest {
				t.Fatalf("ParseBy(%q) error %v does not map to 400", s, err)
			}
			if n != 0 {
				t.Errorf("ParseBy(%q) = %d with error %v, want 0", s, n, err)
			}
		} else {
			if n < 1 || n > maxBy {
				t.Fatalf("ParseBy(%q) = %d, outside 1..2^53", s, n)
			}
			if !isASCIIDigits(s) {
				t.Fatalf("ParseBy(%q) = %d, but the input is not all digits", s, n)
			}
			if v, perr := strconv.ParseUint(s, 10, 64); perr != nil || v != n {
				t.Fatalf("ParseBy(%q) = %d, but the text reads as %d (%v)", s, n, v, perr)
			}
		}
		// The converse: a canonical decimal in range must be accepted.
		if isASCIIDigits(s) && (s[0] != '0' || s == "0") {
			v, _ := new(big.Int).SetString(s, 10)
			if v.Sign() > 0 && v.Cmp(maxByInt) <= 0 && err != nil {
				t.Fatalf("ParseBy(%q) = error %v, want %s", s, err, v)
			}
		}
	})
}

// FuzzParseTTL checks ParseTTL accepts exactly the decimal digits of 1 to
// maxTTL (10 years of seconds), and refuses anything else with a 400.
func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{
		"1", "60", "0060", "315576000", "315576001", "0", "00", "-1", "1.5", "1e3", "abc", "", " 1", "1 ",
		"+1", "0x10", "١", maxU64Text, pow64Text, strings.Repeat("9", 32), strings.Repeat("0", 32) + "1",
	} {
		f.Add(s)
	}
	maxTTLInt := big.NewInt(maxTTL)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseTTL(s)
		if err != nil {
			if !errors.Is(err, errBadRequest) || statusOf(err) != http.StatusBadRequest {
				t.Fatalf("ParseTTL(%q) error %v does not map to 400", s, err)
			}
			if n != 0 {
				t.Errorf("ParseTTL(%q) = %d with error %v, want 0", s, n, err)
			}
		} else {
			if n < 1 || n > maxTTL {
				t.Fatalf("ParseTTL(%q) = %d, outside 1..%d", s, n, maxTTL)
			}
			if !isASCIIDigits(s) {
				t.Fatalf("ParseTTL(%q) = %d, but the input is not all digits", s, n)
			}
			if v, perr := strconv.ParseUint(s, 10, 64); perr != nil || v != n {
				t.Fatalf("ParseTTL(%q) = %d, but the text reads as %d (%v)", s, n, v, perr)
			}
		}
		// The converse: a canonical decimal in range must be accepted.
		if isASCIIDigits(s) && (s[0] != '0' || s == "0") {
			v, _ := new(big.Int).SetString(s, 10)
			if v.Sign() > 0 && v.Cmp(maxTTLInt) <= 0 && err != nil {
				t.Fatalf("ParseTTL(%q) = error %v, want %s", s, err, v)
			}
		}
	})
}

func isASCIIDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FuzzCounterRoute feeds a raw path segment as the {name} of
// GET /counters/{name} and POST /counters/{name}/increment, through the
// same request parsing a real server does. The router must never fail
// (5xx) or redirect, and must answer 200 only for a name that, unescaped,
// is [A-Za-z0-9._:-]{1,128} — and then for that very counter.
func FuzzCounterRoute(f *testing.F) {
	acceptInvalidRequests(f) // tests of bad input
	for _, s := range []string{
		"c", "hits", "Az09._-", "%41bc", "%2E", name128, "rate:user:42", "a%3Ab", ":", "counter:__rand_int__", "a;b",
		".", "..", "", name129, "a%2Fb", "a%20b", "a/b", "a+b", "café", "caf%C3%A9",
		"%", "%zz", "a?b", "a#b", "a;b", "%00", "a%2F..%2Fb", "increment", "./.", "%2e%2e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		if strings.ContainsAny(seg, " \r\n") {
			t.Skip("would not be one request line")
		}
		for _, route := range []struct {
			method, prefix, suffix string
		}{
			{"GET", "/counters/", ""},
			{"POST", "/counters/", "/increment"},
		} {
			target := route.prefix + seg + route.suffix
			raw := route.method + " " + target + " HTTP/1.1\r\nHost: countd\r\n\r\n"
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
			if err != nil {
				continue // net/http refuses it before the router sees it
			}
			fake := newFake()
			rec := serve(t, newTestServer(fake), req)

			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
			default:
				t.Fatalf("%s %q: status %d (Location %q), want 200, 400, 404 or 405; body %q",
					route.method, target, rec.Code, rec.Header().Get("Location"), rec.Body)
			}
			if rec.Code != http.StatusOK {
				assertError(t, rec, rec.Code)
				if vals := fake.snapshot().values; len(vals) != 0 {
					t.Fatalf("%s %q: status %d but state changed to %v", route.method, target, rec.Code, vals)
				}
				continue
			}

			// A 200 must be for a valid name, the one the path spelled.
			escaped := req.URL.EscapedPath()
			seg, ok := strings.CutPrefix(escaped, route.prefix)
			if ok {
				seg, ok = strings.CutSuffix(seg, route.suffix)
			}
			name, uerr := url.PathUnescape(seg)
			if !ok || strings.Contains(seg, "/") || uerr != nil || !crdt.ValidName(name) {
				t.Fatalf("%s %q: 200 for path %q, whose name segment %q is not a valid name",
					route.method, target, escaped, seg)
			}
			var body struct {
				Counter string `json:"counter"`
				Value   int64  `json:"value"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("%s %q: 200 with body %q: %v", route.method, target, rec.Body, err)
			}
			want := map[string]int64{}
			wantValue := int64(0)
			if route.method == "POST" {
				want[name], wantValue = 1, 1
			}
			if body.Counter != name || body.Value != wantValue {
				t.Fatalf("%s %q: reply for counter %q value %d, want %q value %d",
					route.method, target, body.Counter, body.Value, name, wantValue)
			}
			if got := fake.snapshot().values; len(got) != len(want) || got[name] != want[name] {
				t.Fatalf("%s %q: state %v, want %v", route.method, target, got, want)
			}
		}
	})
}

// FuzzDecodeChange feeds decodeChange, the decoder of a change's body. It
// must accept exactly the bodies that are blank, or one JSON object whose
// only key is "by" (spelt so, once) with a whole number from 1 to 2^53, and
// return that number; everything else is a 400.
func FuzzDecodeChange(f *testing.F) {
	for _, s := range []string{
		``, ` `, "\n\t", `{}`, `{"by":1}`, `{"by":5}`, ` {"by" : 7 } `, `{"by":` + pow53Text + `}`,
		`{"by":` + pow53Plus1 + `}`, `{"by":0}`, `{"by":-1}`, `{"by":1.5}`, `{"by":5.0}`, `{"by":1e3}`, `{"by":007}`,
		`{"by":"5"}`, `{"by":null}`, `{"by":true}`, `{"by":[5]}`, `{"by":{}}`, `{"By":5}`, `{"bY":5}`,
		`{"by":5,"by":6}`, `{"by":5,"x":1}`, `{"by":5}{}`, `{"by":5} x`, `by=5`, `5`, `null`, `[]`, `{`, `{"by":5`,
		`{"by":5,}`, `{'by':5}`, "{\"by\":5}\x00", `{"b\u0079":5}`, "{\"by\":5}\u00a0",
	} {
		f.Add([]byte(s))
	}
	maxByInt := new(big.Int).SetUint64(maxBy)
	f.Fuzz(func(t *testing.T, body []byte) {
		by, given, err := decodeChange(body)
		blank := len(bytes.Trim(body, " \t\r\n")) == 0
		if err != nil {
			if !errors.Is(err, errBadRequest) || statusOf(err) != http.StatusBadRequest {
				t.Fatalf("decodeChange(%q) error %v does not map to 400", body, err)
			}
			if by != 0 || given {
				t.Fatalf("decodeChange(%q) = %d, %v with error %v, want nothing set", body, by, given, err)
			}
			if blank {
				t.Fatalf("decodeChange(%q) refused a blank body: %v", body, err)
			}
			// The converse: {"by":N}, written plainly with N in range, is accepted.
			var plain struct {
				By json.Number `json:"by"`
			}
			if json.Unmarshal(body, &plain) == nil && isASCIIDigits(string(plain.By)) {
				if canon, _ := json.Marshal(map[string]json.Number{"by": plain.By}); bytes.Equal(canon, body) {
					if v, _ := new(big.Int).SetString(string(plain.By), 10); v.Sign() > 0 && v.Cmp(maxByInt) <= 0 {
						t.Fatalf("decodeChange(%q) refused a plain body: %v", body, err)
					}
				}
			}
			return
		}
		if blank {
			if given {
				t.Fatalf("decodeChange(%q) = %d from a blank body", body, by)
			}
			return
		}
		// Accepted: one valid JSON object, whose only key is exactly "by".
		if !json.Valid(body) {
			t.Fatalf("decodeChange(%q) accepted a body that is not JSON", body)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatalf("decodeChange(%q) accepted a body that is not an object: %v", body, err)
		}
		for k := range fields {
			if k != "by" {
				t.Fatalf("decodeChange(%q) accepted the key %q", body, k)
			}
		}
		raw, has := fields["by"]
		if has != given {
			t.Fatalf("decodeChange(%q): given = %v, but the object has by = %v", body, given, has)
		}
		if given {
			if by < 1 || by > maxBy {
				t.Fatalf("decodeChange(%q) = %d, outside 1..2^53", body, by)
			}
			// JSON forbids leading zeros, so the literal is the canonical decimal.
			if string(raw) != strconv.FormatUint(by, 10) {
				t.Fatalf("decodeChange(%q) = %d, but by is written %s", body, by, raw)
			}
		}
	})
}

// FuzzCheckQuery checks checkQuery, which reads every query without
// allocating, against url.ParseQuery: it must accept exactly the queries
// ParseQuery reads without error and whose every key is a parameter the
// route takes.
func FuzzCheckQuery(f *testing.F) {
	for _, s := range []string{
		"by=5", "by=5&by=6", "", "&", "&&by=1&", "by", "by=", "=5", "x=1", "by=1&x=2", "b%79=3", "by=%35",
		"by=%zz", "%zz=1", "by=5%", "by=1;x=2", "by;=1", "by+=1", "by=+1", "b y=1", "by=1#x",
		"ttl=60", "by=2&ttl=60", "ttl=5&ttl=6", "ttl", "tt%6C=1", "ttl=%zz", "ttls=1",
	} {
		f.Add(s)
	}
	params := []string{"by", "ttl"} // what the change routes take
	f.Fuzz(func(t *testing.T, raw string) {
		err := checkQuery(raw, params, "takes only by, ttl")
		q, perr := url.ParseQuery(raw)
		ok := perr == nil
		for k := range q {
			ok = ok && (k == "by" || k == "ttl")
		}
		if (err == nil) != ok {
			t.Fatalf("checkQuery(%q) = %v, but url.ParseQuery gives %v, %v", raw, err, q, perr)
		}
		if err != nil && (!errors.Is(err, errBadRequest) || statusOf(err) != http.StatusBadRequest) {
			t.Fatalf("checkQuery(%q) error %v does not map to 400", raw, err)
		}
	})
}
