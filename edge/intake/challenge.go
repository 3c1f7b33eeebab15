package intake

// The form fields and JSON members that carry a bot challenge's token:
// what the Turnstile and hCaptcha widgets put in the form, and what the
// ALTCHA widget (or mailslot.js) sends for a proof of work. hCaptcha's
// widget also fills g-recaptcha-response for compatibility; it is taken
// as the hCaptcha token when h-captcha-response is absent.
const (
	TurnstileField       = "cf-turnstile-response"
	HCaptchaField        = "h-captcha-response"
	HCaptchaCompatField  = "g-recaptcha-response"
	AltchaField          = "altcha"
	maxChallengeTokenLen = 2048 // Turnstile documents 2048; ALTCHA payloads are about 600
)

// ChallengeTokens are the tokens a sign-up carried, as sent. They are for
// the edge's check only and are never stored.
type ChallengeTokens struct {
	Turnstile string
	HCaptcha  string
	Altcha    string
}

// challengeToken validates a token: at most maxChallengeTokenLen bytes of
// printable ASCII without spaces (base64, base64url and the providers'
// dotted forms all are).
func challengeToken(v string) (string, string) {
	if len(v) > maxChallengeTokenLen {
		return "", FieldTooLong
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return "", FieldInvalid
		}
	}
	return v, ""
}
