// Package fastjson is the JSON codec of herd's hot paths: goccy/go-json, made
// safe to use from many goroutines at once.
//
// goccy/go-json compiles a decoder (and an encoder) per type on first use and
// stores it in a process-wide table without synchronisation. Two goroutines
// meeting a type for the first time can race on that table, and a torn read
// of an interface there crashed a collector at start under concurrent
// batches (a nil *structDecoder). Here the first use of each type runs alone,
// under a lock, and is published through a sync.Map before any other
// goroutine may use the type without the lock; after that a call costs one
// map lookup more than goccy's own.
package fastjson

import (
	"reflect"
	"sync"

	json "github.com/goccy/go-json"
)

// RawMessage is a raw encoded JSON value.
type RawMessage = json.RawMessage

// UnmarshalTypeError describes a JSON value that does not fit its Go type.
type UnmarshalTypeError = json.UnmarshalTypeError

var (
	mu       sync.Mutex
	decoders sync.Map // reflect.Type → struct{}: compiled, safe to use unlocked
	encoders sync.Map
)

// Unmarshal decodes data into v, as encoding/json.Unmarshal does.
func Unmarshal(data []byte, v any) error {
	t := reflect.TypeOf(v)
	if _, ok := decoders.Load(t); ok {
		return json.Unmarshal(data, v)
	}
	mu.Lock()
	defer mu.Unlock()
	err := json.Unmarshal(data, v)
	decoders.Store(t, struct{}{})
	return err
}

// Marshal encodes v, as encoding/json.Marshal does.
func Marshal(v any) ([]byte, error) {
	t := reflect.TypeOf(v)
	if _, ok := encoders.Load(t); ok {
		return json.Marshal(v)
	}
	mu.Lock()
	defer mu.Unlock()
	b, err := json.Marshal(v)
	encoders.Store(t, struct{}{})
	return b, err
}
