package api

// moreRoutes are routes added by other files of the package (quarantine,
// bounces, OpenAPI, DKIM, TLS).
func (h *handler) moreRoutes() []Route {
	return append(h.quarantineRoutes(), Route{"GET", "/api/v1/openapi.json", h.openAPI},
		Route{"GET", "/api/v1/dkim", h.dkim},
		Route{"GET", "/api/v1/tlsrpt", h.tlsReports},
		Route{"GET", "/api/v1/tls", h.tlsStatus},
		Route{"GET", "/api/v1/advise", h.advise},
		Route{"GET", "/api/v1/warmup", h.warmup})
}
