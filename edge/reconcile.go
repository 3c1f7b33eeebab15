package edge

import "github.com/gin-gonic/gin"

// reconcileRoutes serves what mailslotctl reconcile asks an edge.
func (s *Server) reconcileRoutes(g *gin.RouterGroup) {}
