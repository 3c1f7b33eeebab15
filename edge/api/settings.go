package api

import (
	"github.com/mailslot/mailslot/internal/config"
	"github.com/mailslot/mailslot/internal/token"
)

// Settings are what the handlers read of the configuration, and nothing
// more: the database URL, the providers' tokens and the workers' knobs stay
// with the node, so the HTTP layer cannot reach for them.
type Settings struct {
	NodeID string
	// PublicURL is the base of the links the edge mints.
	PublicURL string
	// AdminToken authenticates the public listener's admin routes.
	AdminToken string
	// CORSOrigins may call the API from a browser; RedirectHosts may be
	// named by a form's redirect.
	CORSOrigins, RedirectHosts []string
	// ThanksURL and ErrorURL are where a form without its own redirect
	// goes.
	ThanksURL, ErrorURL string
	// ClientIPHeader, when set, names the proxy's header that carries the
	// client's address (and makes X-Forwarded-Proto trusted).
	ClientIPHeader string
	// MaxBodyBytes bounds a request body; MaxEvents an events batch.
	MaxBodyBytes int64
	MaxEvents    int
	// Rate limits per client: requests a second, burst, clients tracked,
	// and the IPv6 prefix length that counts as one client.
	RateRPS          float64
	RateBurst        int
	RateMaxClients   int
	RateV6PrefixBits int
	// Links are the lifetimes of minted links; a confirmation's issue
	// time is derived from Links.Confirm.
	Links token.Lifetimes
	// PrivateHosts are the host names the private listener answers under.
	PrivateHosts []string
	// RecheckQueue bounds the bot-challenge re-check queue.
	RecheckQueue int
	// ResendWebhookSecret verifies Resend's feedback webhooks.
	ResendWebhookSecret string
	Images              ImageSettings
}

// ImageSettings are what the image endpoints read.
type ImageSettings struct {
	// AllowedHosts are the hosts an image URL may name.
	AllowedHosts []string
	// WebhookSecret verifies Replicate's webhooks.
	WebhookSecret  string
	MaxUploadBytes int64
	MaxAttempts    int
}

// SettingsFrom takes the handlers' settings from the configuration: the
// node and the test edge fill them in alike.
func SettingsFrom(c *config.Config) Settings {
	return Settings{
		NodeID: c.NodeID, PublicURL: c.PublicURL, AdminToken: c.AdminToken,
		CORSOrigins: c.CORSOrigins, RedirectHosts: c.RedirectHosts, ThanksURL: c.ThanksURL, ErrorURL: c.ErrorURL,
		ClientIPHeader: c.ClientIPHeader, MaxBodyBytes: c.MaxBodyBytes, MaxEvents: c.MaxEvents,
		RateRPS: c.RateRPS, RateBurst: c.RateBurst, RateMaxClients: c.RateMaxClients, RateV6PrefixBits: c.RateV6PrefixBits,
		Links: c.LinkLifetimes(), PrivateHosts: c.PrivateHosts(), RecheckQueue: c.Challenge.RecheckQueue,
		ResendWebhookSecret: c.Mail.ResendWebhookSecret,
		Images: ImageSettings{AllowedHosts: c.Images.AllowedHosts, WebhookSecret: c.Images.WebhookSecret,
			MaxUploadBytes: c.Images.MaxUploadBytes, MaxAttempts: c.Images.MaxAttempts},
	}
}
