package httpapi

import (
	"net/http"
	"strconv"

	"countd/docs"
)

// handleOpenAPI serves GET /openapi.yaml: the contract of this API
// (docs/openapi.yaml, embedded), open like /health so a client can read it
// before it has a token.
func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(docs.OpenAPI)))
	w.Write(docs.OpenAPI)
}
