// Counter-based randomness for the data pipeline.
//
// The data contract (DESIGN.md, "Determinism of data") makes every training
// sample a pure function of (corpus, seed, epoch, global sample index). So no
// random stream is ever carried from one sample to the next: every decision
// draws from a generator seeded by Hash(seed, stream, a, b) of the inputs it
// depends on, and such a generator is stepped only inside one pure computation
// (one document's layout, one sample's truncation, one sample's masking).
//
// Hash is a chain of SplitMix64 finalizers (Steele, Lea, Flood: "Fast
// splittable pseudorandom number generators", OOPSLA 2014); Generator is
// SplitMix64 itself. RandomPermutation is a keyed Feistel network with cycle
// walking (Black and Rogaway, "Ciphers with arbitrary finite domains", 2002):
// a bijection of [0, size) evaluated at any point in O(1) memory.
//
// Everything here is a value type without global state: thread-safe to share
// when const, cheap to copy.
#pragma once

#include <cstdint>

#include <glog/logging.h>

namespace bert::rnd {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// SplitMix64's output function: a bijective 64-bit mixer.
constexpr uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Independent streams of one seed; each names what its draws decide.
enum Stream : uint64_t {
  kStreamLayout = 1,       // per (epoch, document): target length, split, random next
  kStreamPermutation = 2,  // per epoch: the order of instances
  kStreamTruncation = 3,   // per (epoch, instance): front or back trimming
  kStreamMasking = 4,      // per (epoch, sample index): masked positions and replacements
  kStreamPacking = 5,      // per epoch: where the packed windows start (data.packing)
};

// A 64-bit hash of (seed, stream, a, b); changing any input gives an
// unrelated value.
constexpr uint64_t Hash(uint64_t seed, uint64_t stream, uint64_t a, uint64_t b = 0) {
  uint64_t h = Mix64(seed ^ kGolden);
  h = Mix64(h ^ (stream * 0xd1b54a32d192ed03ULL));
  h = Mix64(h ^ (a + kGolden));
  return Mix64(h ^ (b * 0x8cb92ba72f3d8dd7ULL + 0x2545f4914f6cdd1dULL));
}

// SplitMix64: a tiny generator seeded from Hash(), stepped within one pure
// computation. Not thread-safe (each computation owns its own).
class Generator {
 public:
  explicit Generator(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += kGolden;
    return Mix64(state_);
  }
  // Uniform in [0, n) for n >= 1, unbiased (Lemire, "Fast random integer
  // generation in an interval", 2019).
  uint64_t Below(uint64_t n) {
    DCHECK_GE(n, 1u);
    unsigned __int128 m = static_cast<unsigned __int128>(Next()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(Next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  // Uniform integer in [lo, hi], both included: Python's random.randint.
  int64_t Between(int64_t lo, int64_t hi) {
    DCHECK_LE(lo, hi);
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }
  // Uniform in [0, 1) with 53 random bits: Python's random.random.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // The number of heads in n fair coin flips (a Binomial(n, 1/2) draw), 64
  // flips per step.
  uint64_t CoinFlips(uint64_t n) {
    uint64_t heads = 0;
    for (; n >= 64; n -= 64) heads += static_cast<uint64_t>(__builtin_popcountll(Next()));
    if (n > 0) heads += static_cast<uint64_t>(__builtin_popcountll(Next() & ((uint64_t{1} << n) - 1)));
    return heads;
  }

 private:
  uint64_t state_;
};

// A keyed pseudo-random bijection of [0, size): a balanced Feistel network
// on the smallest even number of bits that covers size (so at most 4x size),
// with cycle walking back into range; about two network passes per call on
// average. Used for the epoch order: sample i of an epoch is instance
// Permute(i), without materialising the shuffle.
class RandomPermutation {
 public:
  RandomPermutation(uint64_t size, uint64_t key) : size_(size), key_(key) {
    while (half_bits_ < 32 && (uint64_t{1} << (2 * half_bits_)) < size) ++half_bits_;
    half_mask_ = (uint64_t{1} << half_bits_) - 1;
  }
  uint64_t size() const { return size_; }

  // index must be < size().
  uint64_t operator()(uint64_t index) const {
    CHECK_LT(index, size_);
    uint64_t x = index;
    do {
      x = Encrypt(x);
    } while (x >= size_);  // terminates: x's cycle under Encrypt contains index < size_
    return x;
  }

 private:
  static constexpr int kRounds = 6;
  uint64_t Encrypt(uint64_t x) const {
    uint64_t left = x >> half_bits_, right = x & half_mask_;
    for (int round = 0; round < kRounds; ++round) {
      uint64_t f = Mix64(key_ ^ Mix64(right + static_cast<uint64_t>(round) * kGolden)) & half_mask_;
      uint64_t next_right = left ^ f;
      left = right;
      right = next_right;
    }
    return (left << half_bits_) | right;
  }

  uint64_t size_;
  uint64_t key_;
  int half_bits_ = 1;
  uint64_t half_mask_ = 1;
};

}  // namespace bert::rnd
