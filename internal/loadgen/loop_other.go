//go:build !linux

package loadgen

import (
	"context"
	"errors"
	"sync/atomic"
)

func runLoop(context.Context, rawRequest, func(Answer) (bool, string), Config, *worker, *atomic.Uint64) error {
	return errors.New("the loop client needs Linux (epoll); use the raw client")
}
