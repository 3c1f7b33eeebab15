// Package mailslot is the shared vocabulary of mailslot: what an outbox row
// holds and what the sync applies. Row kinds, the stored payload types,
// consent bases and actions, and the payload an erasure leaves behind live
// here so that the HTTP intake that produces them, the outbox that stores
// them and the sync that applies them share one definition without
// depending on each other. Nothing here does I/O or imports another
// package of this module.
package mailslot
