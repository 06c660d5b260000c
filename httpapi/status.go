package httpapi

import "net/http"

// handleStatusPage serves GET /, the status page for people.
// TODO(status page helper): embedded HTML/CSS/JS.
func (s *Server) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, errNotFound)
}

// handleStatus serves GET /status, the JSON the status page shows.
// TODO(status page helper).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, errNotFound)
}
