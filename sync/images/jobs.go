package images

import (
	"context"
	"fmt"

	"github.com/mailslot/mailslot"
	"github.com/mailslot/mailslot/internal/config"
)

// Jobs is the job store as the edge's HTTP layer uses it (api.ImageJobs):
// submissions checked against the configured limits, jobs read back, and
// Replicate's webhooks applied at the configured price. The HTTP layer
// speaks only the vocabulary's types, so it does not import this package.
type Jobs struct {
	store  *Store
	limits Limits
	price  float64
}

// NewJobs serves the image endpoints from db with im's limits and price.
func NewJobs(db DB, im config.Images) *Jobs {
	return &Jobs{store: NewStore(db), limits: LimitsFromConfig(im), price: im.PricePerSecond}
}

// Submit validates sub against the limits and queues it.
func (j *Jobs) Submit(ctx context.Context, sub Submission) (Job, error) {
	return j.store.Submit(ctx, sub, j.limits)
}

// Get returns a job, or ErrNotFound.
func (j *Jobs) Get(ctx context.Context, id int64) (Job, error) { return j.store.Get(ctx, id) }

// ApplyReplicate applies a verified Replicate webhook body: known is false
// when no stored prediction has its id, changed false when it was already
// final. A body that is not a prediction is mailslot.ErrInvalidPrediction.
func (j *Jobs) ApplyReplicate(ctx context.Context, body []byte) (known, changed bool, err error) {
	p, err := ParseReplicatePrediction(body)
	if err != nil {
		return false, false, fmt.Errorf("%w: %v", mailslot.ErrInvalidPrediction, err)
	}
	res, err := j.store.ApplyPrediction(ctx, "replicate", p, j.price)
	if err != nil {
		return false, false, err
	}
	return res.Known, res.Changed, nil
}
