package apispec

import (
	"bytes"
	"io"
	"net/http"
)

// Reporter is the part of testing.TB that Transport reports through.
type Reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// Transport returns an http.RoundTripper that sends every request through
// base (http.DefaultTransport if nil) and reports to t, with Errorf,
// every exchange that does not match the contract. It reads each response
// body whole before it returns the response (a body cut short is handed
// on as it came, unchecked). Requests whose context came from Invalid
// are not checked; their responses are.
func Transport(t Reporter, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	spec, err := Load()
	if err != nil {
		t.Helper()
		t.Errorf("%v", err)
	}
	return &checking{t: t, base: base, spec: spec}
}

type checking struct {
	t    Reporter
	base http.RoundTripper
	spec *Spec
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (c *checking) CloseIdleConnections() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (c *checking) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		clone := req.Clone(req.Context())
		clone.Body = io.NopCloser(bytes.NewReader(b))
		clone.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		req = clone
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil || c.spec == nil || req.Method == http.MethodHead {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	x := Exchange{Request: req, RequestBody: reqBody, Status: resp.StatusCode, Header: resp.Header, Body: body,
		InvalidRequest: IsInvalid(req.Context())}
	if err := c.spec.Check(x); err != nil {
		c.t.Errorf("apispec: %v", err)
	}
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
