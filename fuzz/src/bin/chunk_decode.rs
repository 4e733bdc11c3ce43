//! Fuzz target for `AudioChunk::decode`, the wire decoder every Kafka record and chunk file goes
//! through (issue 10). Bytes from the network must give an error, never a panic or a huge
//! allocation; a chunk that does decode must be valid and must survive encode -> decode unchanged.

use auscult_schemas::{AudioChunk, ChunkOrigin};

#[global_allocator]
static ALLOC: auscult_fuzz::CappedAlloc = auscult_fuzz::CappedAlloc;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let origin = ChunkOrigin::Kafka { topic: "auscult.audio".to_owned(), partition: 0, offset: 0 };
        let Ok(chunk) = AudioChunk::decode(data, origin.clone()) else {
            return;
        };
        assert!(chunk.validate().is_ok(), "decode returned a chunk that fails validate: {chunk:?}");
        assert!(data.ends_with(&chunk.payload), "the payload is not the tail of the input");
        let again = AudioChunk::decode(&chunk.encode(), origin).expect("a decoded chunk re-encodes to a decodable one");
        assert_eq!(again, chunk, "encode -> decode changed the chunk");
    });
}
