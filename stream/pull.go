package stream

import "github.com/nats-io/nats.go/jetstream"

// PullLimit bounds a pull consumer's Messages in memory: each pull request
// asks for at most maxBytes (never below one full frame, or the consumer
// would stall on it), and the client buffers at most PullMessages(maxBytes)
// messages. jetstream.PullMaxBytes alone would give the client a buffer of a
// million message slots (8 MB of pointers, scanned by every garbage
// collection) whatever maxBytes is.
func PullLimit(maxBytes int) jetstream.PullMessagesOpt {
	maxBytes = max(maxBytes, MaxFrameBytes+64<<10)
	return jetstream.PullMaxMessagesWithBytesLimit(PullMessages(maxBytes), maxBytes)
}

// PullMessages is how many messages a pull of maxBytes buffers: one per
// 32 KiB (a frame of a few dozen events), from 32 to 1024.
func PullMessages(maxBytes int) int {
	return min(max(maxBytes/(32<<10), 32), 1024)
}
