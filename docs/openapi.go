// Package docs holds countd's documents that the code needs: the OpenAPI
// contract of the HTTP API, which the node serves at GET /openapi.yaml and
// the tests validate every request and response against
// (internal/apispec).
package docs

import _ "embed"

// OpenAPI is docs/openapi.yaml, the OpenAPI 3.1 description of the HTTP API.
//
//go:embed openapi.yaml
var OpenAPI []byte
