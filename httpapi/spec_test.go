package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"countd/docs"
	"countd/internal/apispec"
)

// The contract, docs/openapi.yaml, is checked on every exchange these tests
// make: they send requests to a Server's handler only through serve (or
// serveTo), and over the network only through specTransport, both of which check
// the request and the response against it (internal/apispec).
//
// A test that means to send invalid requests (a test of a 400, a 404, a
// 405, a 413) calls acceptInvalidRequests: its requests are not checked,
// its responses still are.

// invalidTests holds the names of the tests that called
// acceptInvalidRequests; their subtests inherit it.
var invalidTests sync.Map

// acceptInvalidRequests says that t (and its subtests) sends requests it
// means to be invalid: only the responses are checked against the contract.
func acceptInvalidRequests(t testing.TB) {
	t.Helper()
	invalidTests.Store(t.Name(), true)
	t.Cleanup(func() { invalidTests.Delete(t.Name()) })
}

// meansInvalid reports whether t or a test it is a subtest of called
// acceptInvalidRequests.
func meansInvalid(t testing.TB) bool {
	for name := t.Name(); ; {
		if _, ok := invalidTests.Load(name); ok {
			return true
		}
		i := strings.LastIndex(name, "/")
		if i < 0 {
			return false
		}
		name = name[:i]
	}
}

// serve sends req, from loopback unless it names another remote address,
// to s's handler and checks the exchange against the contract.
func serve(t testing.TB, s *Server, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	serveTo(t, s.Handler(), rec, req)
	return rec
}

// serveTo is serve for a handler and a recorder of the caller's.
func serveTo(t testing.TB, h http.Handler, rec *httptest.ResponseRecorder, req *http.Request) {
	t.Helper()
	if req.RemoteAddr == "192.0.2.1:1234" { // httptest.NewRequest's default
		req.RemoteAddr = loopbackClient
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			t.Fatalf("reading the request body: %v", err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	sent := req.Clone(req.Context()) // as sent: the handler may change req
	h.ServeHTTP(rec, req)
	checkExchange(t, sent, body, rec.Result().StatusCode, rec.Header(), rec.Body.Bytes())
}

// checkExchange checks one exchange against the contract.
func checkExchange(t testing.TB, req *http.Request, reqBody []byte, status int, h http.Header, body []byte) {
	t.Helper()
	spec, err := apispec.Load()
	if err != nil {
		t.Fatal(err)
	}
	x := apispec.Exchange{Request: req, RequestBody: reqBody, Status: status, Header: h, Body: body,
		InvalidRequest: meansInvalid(t) || apispec.IsInvalid(req.Context())}
	if err := spec.Check(x); err != nil {
		t.Errorf("%v", err)
	}
}

// specTransport returns a RoundTripper that sends through base (nil:
// http.DefaultTransport) and checks every exchange against the contract.
func specTransport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	return markInvalid{t, apispec.Transport(t, base)}
}

// markInvalid marks the requests of a test that called
// acceptInvalidRequests as meant to be invalid.
type markInvalid struct {
	t    testing.TB
	next http.RoundTripper
}

func (m markInvalid) RoundTrip(req *http.Request) (*http.Response, error) {
	if meansInvalid(m.t) {
		req = req.WithContext(apispec.Invalid(req.Context()))
	}
	return m.next.RoundTrip(req)
}

func (m markInvalid) CloseIdleConnections() {
	m.next.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

func TestOpenAPIServed(t *testing.T) {
	s, _ := newTokenServer(t, writeTokens(t, "s3cret-token-for-the-spec\n"))
	rec := serve(t, s, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil)) // no token: open
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	if !bytes.Equal(rec.Body.Bytes(), docs.OpenAPI) {
		t.Error("the body is not docs/openapi.yaml")
	}
}

// TestSpecDriftIsCaught checks that the checks fail when the contract and
// the server part: a status the contract does not document for an
// operation, a header it does not document, a body that does not match.
func TestSpecDriftIsCaught(t *testing.T) {
	drifted := func(t *testing.T, from, to string) *apispec.Spec {
		t.Helper()
		doc := string(docs.OpenAPI)
		if !strings.Contains(doc, from) {
			t.Fatalf("the contract has no %q", from)
		}
		spec, err := apispec.Parse([]byte(strings.Replace(doc, from, to, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	exchange := func(s *Server, req *http.Request) apispec.Exchange {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req.Clone(req.Context()))
		return apispec.Exchange{Request: req, Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	}
	keyed := func(target, key string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, target, nil)
		req.Header.Set(keyHeader, key)
		return req
	}
	f := newFake()
	s := newTestServer(f)
	exchange(s, keyed("/counters/c/increment", "k"))
	conflict := exchange(s, keyed("/counters/c/increment?by=2", "k"))
	replay := exchange(s, keyed("/counters/c/increment", "k"))
	real, err := apispec.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []apispec.Exchange{conflict, replay} {
		if err := real.Check(x); err != nil {
			t.Fatalf("the contract itself: %v", err)
		}
	}

	t.Run("undocumented status", func(t *testing.T) {
		spec := drifted(t, `        "422":`, `        "418":`)
		if err := spec.Check(conflict); err == nil || !strings.Contains(err.Error(), "status is not supported") {
			t.Errorf("a 422 the contract does not document: %v, want caught", err)
		}
	})
	t.Run("undocumented header", func(t *testing.T) {
		spec := drifted(t, "        Idempotent-Replayed:\n          $ref: \"#/components/headers/IdempotentReplayed\"\n", "")
		if err := spec.Check(replay); err == nil || !strings.Contains(err.Error(), "Idempotent-Replayed") {
			t.Errorf("an Idempotent-Replayed the contract does not document: %v, want caught", err)
		}
	})
	t.Run("body", func(t *testing.T) {
		spec := drifted(t, "      required: [counter, value, node]", "      required: [counter, value, node, version]")
		if err := spec.Check(replay); err == nil || !strings.Contains(err.Error(), "version") {
			t.Errorf("a value without the field the contract requires: %v, want caught", err)
		}
	})
	t.Run("a status the server never sends on an operation", func(t *testing.T) {
		x := replay
		x.Status = http.StatusTeapot
		if err := real.Check(x); err == nil {
			t.Error("a 418 on a change: no error, want caught")
		}
	})
	t.Run("an invalid request not marked so", func(t *testing.T) {
		x := exchange(s, keyed("/counters/c/increment?by=0", "k"))
		if err := real.Check(x); err == nil {
			t.Error("?by=0 not marked invalid: no error, want caught")
		}
		x.InvalidRequest = true
		if err := real.Check(x); err != nil {
			t.Errorf("?by=0 marked invalid, its 400 checked: %v", err)
		}
	})
}
