package api

import "github.com/gin-gonic/gin"

// adminRoutes registers the operator API. On the public listener g requires
// the admin token; on the private listener it does not. Each capability
// adds its routes here.
func (s *Server) adminRoutes(g *gin.RouterGroup) {
	s.reconcileRoutes(g)
	s.privacyAdminRoutes(g)
	s.imageRoutes(g)
}
