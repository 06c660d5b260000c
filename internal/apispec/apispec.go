// Package apispec checks HTTP exchanges with a countd node against the
// contract, docs/openapi.yaml, with github.com/getkin/kin-openapi: the
// request (its path, parameters, headers and body) and the response (its
// status, which must be one the operation documents, its headers and its
// body).
//
// It is test support: the httpapi tests check every exchange they make
// through one helper, and the process tests through Transport, the
// http.RoundTripper their clients use. No production code path imports it.
//
// A test that sends a request it means to be invalid (a test of a 400)
// says so, explicitly: Exchange.InvalidRequest, or a request whose context
// came from Invalid. Such a request is not checked; its response still is,
// against the operation the request names or, if it names none (a 404, a
// 405), as an error body.
package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"countd/docs"
)

// Spec is a parsed OpenAPI document that checks exchanges.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
	errSch *openapi3.Schema // components/schemas/Error
}

var loadOnce = sync.OnceValues(func() (*Spec, error) { return Parse(docs.OpenAPI) })

// Load returns the contract, docs/openapi.yaml as embedded in the binary,
// parsed once.
func Load() (*Spec, error) { return loadOnce() }

// Parse parses and validates an OpenAPI document. Tests of the checks
// themselves give it a changed copy of the contract.
func Parse(b []byte) (*Spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("apispec: parsing: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("apispec: the document is not valid OpenAPI: %w", err)
	}
	// kin-openapi validates an OpenAPI 3.1 document's values with a JSON
	// Schema 2020-12 validator it compiles anew for every value: 3 ms an
	// exchange, which slows the process tests' load clients to a crawl.
	// Its own validator, which a 3.0 document gets, checks every keyword
	// the contract uses (type lists with "null", pattern, enum,
	// bounds, additionalProperties) at a hundredth of the cost; the
	// document itself was validated as 3.1 above.
	doc.OpenAPI = "3.0.3"
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("apispec: %w", err)
	}
	ref := doc.Components.Schemas["Error"]
	if ref == nil || ref.Value == nil {
		return nil, errors.New("apispec: the document has no components/schemas/Error")
	}
	return &Spec{doc: doc, router: router, errSch: ref.Value}, nil
}

// Exchange is one request and the response it got.
type Exchange struct {
	// Request is the request as sent; its Body is not read (RequestBody
	// holds it).
	Request     *http.Request
	RequestBody []byte
	Status      int
	Header      http.Header
	Body        []byte
	// InvalidRequest says the test means the request to be invalid: it is
	// not checked, the response is.
	InvalidRequest bool
}

// ownHeaders are response headers of countd's own that must be documented
// on every response that carries them (kin-openapi checks only the
// documented ones).
var ownHeaders = []string{"Idempotent-Replayed", "WWW-Authenticate", "Content-Disposition", "Content-Encoding", "Retry-After"}

// validators are the body decoders the contract needs beyond
// kin-openapi's own: the status page is text/html.
var registerDecoders = sync.OnceFunc(func() {
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
})

// Check returns what in x the contract does not allow, or nil.
func (s *Spec) Check(x Exchange) error {
	registerDecoders()
	req := x.Request.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(x.RequestBody))
	req.ContentLength = int64(len(x.RequestBody))
	what := fmt.Sprintf("%s %s -> %d", req.Method, req.URL.RequestURI(), x.Status)

	route, params, err := s.router.FindRoute(req)
	if err != nil {
		if !x.InvalidRequest {
			return fmt.Errorf("%s: the contract has no such operation: %w", what, err)
		}
		return s.checkUnrouted(what, x)
	}
	for k, v := range params { // the router leaves them escaped; the node reads them unescaped
		if u, err := url.PathUnescape(v); err == nil {
			params[k] = u
		}
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if !x.InvalidRequest {
		s.asJSON(req, route, x.RequestBody)
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("%s: the request does not match the contract (if the test means it to be invalid, it must say so): %w", what, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: x.Status, Header: x.Header, Options: opts,
	}
	out.SetBodyBytes(x.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("%s: the response does not match the contract: %w (body %.200q)", what, err, x.Body)
	}
	resp := route.Operation.Responses.Status(x.Status)
	for _, h := range ownHeaders {
		if _, sent := x.Header[http.CanonicalHeaderKey(h)]; sent && (resp == nil || resp.Value == nil || !documented(resp.Value.Headers, h)) {
			return fmt.Errorf("%s: the response has header %s, which the contract does not document for it", what, h)
		}
	}
	return nil
}

// documented reports whether headers holds name, whatever its case.
func documented(headers openapi3.Headers, name string) bool {
	for k := range headers {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// asJSON prepares req's body for kin-openapi as the node reads it: JSON
// whatever its Content-Type (curl -d sends a form type); and for a change,
// whose body is optional, a body of only white space is no body.
func (s *Spec) asJSON(req *http.Request, route *routers.Route, body []byte) {
	rb := route.Operation.RequestBody
	if rb == nil || rb.Value == nil {
		return
	}
	if rb.Value.Content["*/*"] != nil && len(bytes.TrimSpace(body)) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
		req.Header.Del("Content-Type")
		return
	}
	req.Header.Set("Content-Type", "application/json")
}

// checkUnrouted checks the response to a request that names no operation
// (an unknown path, a wrong method, a bad name in a path): an error body,
// with Allow on a 405.
func (s *Spec) checkUnrouted(what string, x Exchange) error {
	switch x.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnauthorized, http.StatusForbidden:
	case http.StatusMethodNotAllowed:
		if x.Header.Get("Allow") == "" {
			return fmt.Errorf("%s: a 405 without Allow", what)
		}
	default:
		return fmt.Errorf("%s: a request the contract has no operation for is answered with an undocumented status", what)
	}
	return s.checkError(what, x.Header, x.Body)
}

// checkError checks an error response: JSON, matching the Error schema.
func (s *Spec) checkError(what string, h http.Header, body []byte) error {
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "application/json" {
		return fmt.Errorf("%s: an error with Content-Type %q, not application/json", what, h.Get("Content-Type"))
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s: an error body that is not JSON: %.200q", what, body)
	}
	if err := s.errSch.VisitJSON(v); err != nil {
		return fmt.Errorf("%s: the error body does not match the Error schema: %w", what, err)
	}
	return nil
}

type invalidKey struct{}

// Invalid returns ctx marked so that a request made with it is taken as
// meant to be invalid (see the package comment).
func Invalid(ctx context.Context) context.Context {
	return context.WithValue(ctx, invalidKey{}, true)
}

// IsInvalid reports whether ctx came from Invalid.
func IsInvalid(ctx context.Context) bool {
	v, _ := ctx.Value(invalidKey{}).(bool)
	return v
}
