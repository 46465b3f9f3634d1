package main

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/council/activityhistory/httpapi"
)

// healthTimeout bounds a health or readiness answer.
const healthTimeout = 2 * time.Second

// check is one dependency the health endpoints report on.
type check struct {
	name        string
	description string
	ping        func(ctx context.Context) error
}

// healthEntry is one check, in the Hackney health writer's shape and order.
type healthEntry struct {
	Data             map[string]any `json:"data"`
	Description      string         `json:"description"`
	DurationMs       float64        `json:"durationMs"`
	ExceptionMessage *string        `json:"exceptionMessage"`
	Status           string         `json:"status"`
}

type healthReport struct {
	Entries         map[string]healthEntry `json:"entries"`
	Status          string                 `json:"status"`
	TotalDurationMs float64                `json:"totalDurationMs"`
}

// ops serves the endpoints that need no token: health, readiness, metrics.
type ops struct {
	checks []check
	ready  *atomic.Bool
	reg    *prometheus.Registry
}

func (o *ops) health(ctx context.Context) (healthReport, bool) {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	start := time.Now()
	rep := healthReport{Status: "Healthy", Entries: make(map[string]healthEntry, len(o.checks))}
	type result struct {
		i   int
		e   healthEntry
		err error
	}
	results := make(chan result, len(o.checks))
	for i, c := range o.checks {
		go func() {
			t := time.Now()
			err := c.ping(ctx)
			results <- result{i: i, err: err, e: healthEntry{Data: map[string]any{}, Description: c.description, DurationMs: ms(time.Since(t))}}
		}()
	}
	healthy := true
	// A ping that ignores its deadline must not hold the answer back.
	pending := make(map[int]bool, len(o.checks))
	for i := range o.checks {
		pending[i] = true
	}
	for range o.checks {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			for i := range pending {
				msg := "no answer within " + healthTimeout.String()
				rep.Entries[o.checks[i].name] = healthEntry{Data: map[string]any{}, Status: "Unhealthy", Description: o.checks[i].description,
					DurationMs: ms(time.Since(start)), ExceptionMessage: &msg}
			}
			rep.Status = "Unhealthy"
			rep.TotalDurationMs = ms(time.Since(start))
			return rep, false
		}
		delete(pending, r.i)
		r.e.Status = "Healthy"
		if r.err != nil {
			healthy = false
			r.e.Status = "Unhealthy"
			// The backend's own message helps operators; it carries no secrets.
			msg := r.err.Error()
			r.e.ExceptionMessage = &msg
		}
		rep.Entries[o.checks[r.i].name] = r.e
	}
	if !healthy {
		rep.Status = "Unhealthy"
	}
	rep.TotalDurationMs = ms(time.Since(start))
	return rep, healthy
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (o *ops) mount(r gin.IRoutes) {
	r.GET("/api/v1/healthcheck/ping", func(c *gin.Context) {
		rep, ok := o.health(c.Request.Context())
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		c.JSON(status, rep)
	})
	r.GET("/healthz", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	})
	r.GET("/readyz", func(c *gin.Context) {
		if !o.ready.Load() {
			httpapi.Expected(c)
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "starting"})
			return
		}
		if rep, ok := o.health(c.Request.Context()); !ok {
			reasons := map[string]string{}
			for name, e := range rep.Entries {
				if e.ExceptionMessage != nil {
					reasons[name] = *e.ExceptionMessage
				}
			}
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "dependency down", "reasons": reasons})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	metrics := promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{Registry: o.reg})
	r.GET("/metrics", gin.WrapH(metrics))
}
