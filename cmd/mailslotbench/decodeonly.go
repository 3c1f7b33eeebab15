package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

// decodeOnlyArg makes mailslotbench run the calibration server instead of
// benchmarking.
const decodeOnlyArg = "decode-only-server"

// serveDecodeOnly is the calibration server of the decode-only scenario:
// Gin, the sign-up JSON decoded into a struct with ShouldBindJSON, a small
// 202, nothing stored. The issue measured such a handler at 34,000/s on
// this machine with wrk; run beside the edge's scenarios, it shows how
// much of the machine a benchmark window had, so that figures from
// different windows can be compared. It listens where startServer tells a
// mailslot to (MAILSLOT_ADDR, MAILSLOT_PRIVATE_ADDR) and answers /readyz.
func serveDecodeOnly() error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/v1/leads", func(c *gin.Context) {
		var lead struct {
			Email         string            `json:"email" binding:"required"`
			Property      string            `json:"property" binding:"required"`
			Consent       string            `json:"consent"`
			PolicyVersion string            `json:"policy_version"`
			Source        string            `json:"source"`
			Name          string            `json:"name"`
			Page          string            `json:"page"`
			UTM           map[string]string `json:"utm"`
		}
		if err := c.ShouldBindJSON(&lead); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "invalid_json"})
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"id": "0198a3f1-7c2e-7b4a-9d1e-2f3a4b5c6d7e", "status": "accepted"})
	})
	r.GET("/readyz", func(c *gin.Context) { c.Status(http.StatusOK) })
	// The benchmark stops its servers with SIGTERM and expects a clean exit.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 2)
	var servers []*http.Server
	for _, addr := range []string{os.Getenv("MAILSLOT_ADDR"), os.Getenv("MAILSLOT_PRIVATE_ADDR")} {
		srv := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() { errc <- srv.ListenAndServe() }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	for _, srv := range servers {
		if err := srv.Shutdown(context.Background()); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}
