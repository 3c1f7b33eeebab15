package images

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/mailslot/mailslot/internal/config"
)

// FromConfig builds the dispatcher an edge runs. The node calls it only
// when DATABASE_URL is set and MAILSLOT_IMAGE_PROVIDER is not off.
func FromConfig(cfg *config.Config, log *slog.Logger) (*Dispatcher, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("image dispatcher: DATABASE_URL is not set")
	}
	prov, err := ProviderFromConfig(cfg.Images)
	if err != nil {
		return nil, err
	}
	poll := DefaultPollInterval
	if cfg.Images.Provider == config.ImageProviderReplicate && cfg.Images.WebhookURL != "" {
		poll = DefaultWebhookPollInterval
	}
	return New(Options{
		DatabaseURL:    cfg.DatabaseURL,
		Provider:       prov,
		Owner:          cfg.NodeID,
		Concurrency:    cfg.Images.Concurrency,
		PollInterval:   poll,
		AttemptTimeout: cfg.Images.AttemptTimeout,
		PricePerSecond: cfg.Images.PricePerSecond,
		MonthlyBudget:  cfg.Images.MonthlyBudget,
		CaptionPrompt:  cfg.Images.CaptionPrompt,
		Logger:         log,
	})
}

// ProviderFromConfig builds the configured provider.
func ProviderFromConfig(im config.Images) (Provider, error) {
	client := &http.Client{} // timeouts are per request, from the context
	switch im.Provider {
	case config.ImageProviderReplicate:
		return NewReplicate(ReplicateOptions{
			BaseURL:        im.ReplicateURL,
			Token:          im.ReplicateToken,
			Models:         map[string]string{ModelFaces: im.FacesModel, ModelCaption: im.CaptionModel},
			WebhookURL:     im.WebhookURL,
			RequestTimeout: im.RequestTimeout,
			Client:         client,
		})
	case config.ImageProviderHuggingFace:
		return NewHuggingFace(HuggingFaceOptions{
			Endpoints:      map[string]string{ModelFaces: im.HFFacesURL, ModelCaption: im.HFCaptionURL},
			Token:          im.HFToken,
			RequestTimeout: im.RequestTimeout,
			Client:         client,
		})
	}
	return nil, fmt.Errorf("image provider %q is not one this build runs", im.Provider)
}

// LimitsFromConfig is what a submission is checked against.
func LimitsFromConfig(im config.Images) Limits {
	return Limits{AllowedHosts: im.AllowedHosts, MaxUploadBytes: im.MaxUploadBytes, UploadStoreBytes: im.UploadStoreBytes}
}
