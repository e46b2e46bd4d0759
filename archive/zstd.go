package archive

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/format"
)

// lakeZstd is the lake's Parquet compression: zstd at its default level
// with a 1 MiB window. parquet-go's own codec keeps the encoder's default
// 8 MiB window, and each pooled encoder then holds 16 MiB of history (seen
// as the archiver's largest allocation under load) to compress pages that
// are a few hundred KiB at most; a window wider than the page finds
// nothing more. The files are ordinary zstd Parquet files, and they are
// read back with parquet-go's decoder.
var lakeZstd compress.Codec = &zstdCodec{}

type zstdCodec struct {
	encoders sync.Pool
}

func (c *zstdCodec) String() string { return "ZSTD" }

func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false),
		)
		if err != nil {
			return dst, err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	return parquet.Zstd.Decode(dst, src)
}
