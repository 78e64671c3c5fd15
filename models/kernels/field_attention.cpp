// AutoInt's per-head self-attention over a handful of fields, forward and backward, fp32 on the CPU.
//
// For each row b and head h, with q, k, v the [fields x d] blocks of that head (rows at a stride of heads * d):
//   forward:  P = softmax(q k^T * scale) by rows, out = P v, or relu(P v + x) given AutoInt's identity residual x
//   backward: dP = g v^T, dS = P * (dP - rowsum(P * dP)) * scale, dq = dS k, dk = dS^T q, dv = P^T g, where g is the
//             incoming gradient, or that gradient through the ReLU (zero where out <= 0) given the forward's out
// q, k and v are [rows, fields, heads * d], each contiguous or a slice of one [rows, fields, n] tensor (fields at any
// stride, the last dimension contiguous); their gradients come out in one [rows, fields, 3 * heads * d] tensor
// (dq | dk | dv per field), so the caller's input and weight gradients are one matrix product each. The residual add,
// the ReLU and its gradient are done here on data in cache, not as passes of their own over [rows, fields, heads * d].
// The exact per-head arithmetic: the batched-product path in models/layers.py scores every (field, head) against every
// (field, head) and masks, heads x the work, and torch's softmax over rows of ~10 is slow. Here a block is a few
// hundred vector FMAs: the query fields sit in the lanes of one 16-float vector (fields <= 16), so the softmax over
// keys is elementwise across vectors, with no horizontal reductions. Written with GCC/Clang vector extensions
// (AVX-512 where the compiler targets it, split into narrower registers elsewhere); rows run in parallel on torch's
// intra-op threads (at::parallel_for), each row's blocks in a fixed order, so results do not depend on threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

namespace {

typedef float vu __attribute__((vector_size(64), aligned(4)));  // unaligned loads and stores
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

constexpr int L = 16;  // lanes: the query fields, zero-padded

inline vf bc(float x) { return (vf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
inline vf vload(const float* p) { return *(const vu*)p; }
inline void vstore(float* p, vf x) { *(vu*)p = x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }

// exp(x) for x <= 0 (scores less their maximum): 2^n * p(r) with a degree-6 polynomial on |r| <= ln2 / 2 (relative
// error ~2e-7, as Cephes' expf); x below -87 is clamped (exp(-87) ~ 1.6e-38, against a row maximum of exp(0) = 1).
inline vf vexp(vf x) {
  x = vmax(x, bc(-87.f));
  const vf t = x * 1.44269504088896341f + 0.5f;
  vi n = __builtin_convertvector(t, vi);
  n = __builtin_convertvector(n, vf) > t ? n - 1 : n;  // floor(t): conversion truncates toward zero
  const vf nf = __builtin_convertvector(n, vf);
  const vf r = x - nf * 0.693359375f + nf * 2.12194440e-4f;  // x - n ln2, ln2 in two parts
  vf p = bc(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const vi bits = (n + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Lane j of swap_blocks<B, false>(a, b): a[j] where bit B of j is clear, else b[j - B]; of swap_blocks<B, true>(a, b):
// a[j + B] where it is clear, else b[j]. Applied to rows i and i + B for every i with bit B clear, it swaps the
// off-diagonal B x B blocks of each 2B x 2B block; for B = 8, 4, 2, 1 in turn that transposes a 16 x 16 matrix.
constexpr int swap_index(int B, bool high, int j) { return (j & B) ? (high ? L + j : L + j - B) : (high ? j + B : j); }

#if defined(__clang__)
template <int B, bool high, int... J>
inline vf swap_blocks(vf a, vf b, std::integer_sequence<int, J...>) {
  return __builtin_shufflevector(a, b, swap_index(B, high, J)...);
}
#endif

template <int B, bool high>
inline vf swap_blocks(vf a, vf b) {
#if defined(__clang__)
  return swap_blocks<B, high>(a, b, std::make_integer_sequence<int, L>{});
#else
  constexpr vi mask = {swap_index(B, high, 0),  swap_index(B, high, 1),  swap_index(B, high, 2),  swap_index(B, high, 3),
                       swap_index(B, high, 4),  swap_index(B, high, 5),  swap_index(B, high, 6),  swap_index(B, high, 7),
                       swap_index(B, high, 8),  swap_index(B, high, 9),  swap_index(B, high, 10), swap_index(B, high, 11),
                       swap_index(B, high, 12), swap_index(B, high, 13), swap_index(B, high, 14), swap_index(B, high, 15)};
  return __builtin_shuffle(a, b, mask);
#endif
}

template <int B>
inline void swap_stage(vf* m) {
  for (int i = 0; i < L; ++i) {
    if (i & B) continue;
    const vf low = swap_blocks<B, false>(m[i], m[i + B]), high = swap_blocks<B, true>(m[i], m[i + B]);
    m[i] = low, m[i + B] = high;
  }
}

// xT[c][i] = x[i][c] for i < F (rows at stride ld), 0 for the padding lanes: each 16 columns as a 16 x 16 transpose
// in registers (64 two-vector shuffles), the rows past F zero.
template <int F, int D>
inline void transpose(const float* x, int64_t ld, float* xT) {
  for (int c0 = 0; c0 < D; c0 += L) {
    vf m[L];
    for (int i = 0; i < L; ++i) m[i] = i < F ? vload(x + i * ld + c0) : bc(0.f);
    swap_stage<8>(m), swap_stage<4>(m), swap_stage<2>(m), swap_stage<1>(m);
    for (int c = 0; c < L; ++c) *(vf*)(xT + (c0 + c) * L) = m[c];
  }
}

// sT[j] (lanes i) = sum_c y[j][c] * xT[c]: x's rows against y's rows, one vector per row of y.
template <int F, int D>
inline void products_t(const float* xT, const float* y, int64_t ld, vf* sT) {
  for (int j = 0; j < F; ++j) sT[j] = bc(0.f);
  for (int c = 0; c < D; ++c) {
    const vf xc = vload(xT + c * L);
    for (int j = 0; j < F; ++j) sT[j] += y[j * ld + c] * xc;
  }
}

// out[r] = sum_s w(r, s) x[s] for r < F, where w(r, s) = coef[s * L + r] (by_column) or coef[r * L + s].
// With `residual` (by_column only), out[r] = relu(that + residual[r]), residual rows at stride ldo.
template <int F, int D, bool by_column>
inline void combine(const float* coef, const float* x, int64_t ldx, float* out, int64_t ldo, const float* residual = nullptr) {
  constexpr int V = D / 16;
  vf acc[F][V];
  for (int r = 0; r < F; ++r)
    for (int u = 0; u < V; ++u) acc[r][u] = bc(0.f);
  for (int s = 0; s < F; ++s) {
    vf xs[V];
    for (int u = 0; u < V; ++u) xs[u] = vload(x + s * ldx + 16 * u);
    for (int r = 0; r < F; ++r) {
      const float w = by_column ? coef[s * L + r] : coef[r * L + s];
      for (int u = 0; u < V; ++u) acc[r][u] += w * xs[u];
    }
  }
  if (residual != nullptr) {
    for (int r = 0; r < F; ++r)
      for (int u = 0; u < V; ++u) acc[r][u] = vmax(acc[r][u] + vload(residual + r * ldo + 16 * u), bc(0.f));
  }
  for (int r = 0; r < F; ++r)
    for (int u = 0; u < V; ++u) vstore(out + r * ldo + 16 * u, acc[r][u]);
}

template <int F, int D>
std::tuple<torch::Tensor, torch::Tensor> forward_t(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                                  const c10::optional<torch::Tensor>& residual, int64_t heads, double scale) {
  const int64_t rows = q.size(0), width = q.size(2), lq = q.stride(1), lk = k.stride(1), lv = v.stride(1);
  auto out = torch::empty({rows, F, width}, q.options());
  auto probs = torch::empty({rows, heads, F, L}, q.options());  // probs[b][h][j][i]: query i's weight on key j
  const float *Q0 = q.data_ptr<float>(), *K0 = k.data_ptr<float>(), *V0 = v.data_ptr<float>();
  const float* X = residual ? residual->data_ptr<float>() : nullptr;
  float *O = out.data_ptr<float>(), *PR = probs.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, rows, 16, [&](int64_t b0, int64_t b1) {
    alignas(64) float qT[D * L];
    vf s[F];
    for (int64_t b = b0; b < b1; ++b) {
      const float *Q = Q0 + b * F * lq, *K = K0 + b * F * lk, *V = V0 + b * F * lv;
      const int64_t at = b * F * width;  // this row in out (and the residual)
      for (int64_t h = 0; h < heads; ++h) {
        transpose<F, D>(Q + h * D, lq, qT);
        products_t<F, D>(qT, K + h * D, lk, s);
        vf m = s[0] * sc;
        for (int j = 1; j < F; ++j) m = vmax(m, s[j] * sc);
        vf sum = bc(0.f);
        for (int j = 0; j < F; ++j) {
          s[j] = vexp(s[j] * sc - m);
          sum += s[j];
        }
        const vf inv = 1.f / sum;
        float* p = PR + (b * heads + h) * F * L;
        for (int j = 0; j < F; ++j) vstore(p + j * L, s[j] * inv);
      }
      // Read back once every head's probabilities are stored: a scalar load of a vector still in flight stalls.
      for (int64_t h = 0; h < heads; ++h)
        combine<F, D, true>(PR + (b * heads + h) * F * L, V + h * D, lv, O + at + h * D, width,
                            X != nullptr ? X + at + h * D : nullptr);
    }
  });
  return {out, probs};
}

// Returns (dqkv, the gradient through the ReLU given `out`, else an empty tensor).
template <int F, int D>
std::tuple<torch::Tensor, torch::Tensor> backward_t(const torch::Tensor& grad, const torch::Tensor& q, const torch::Tensor& k,
                                                    const torch::Tensor& v, const torch::Tensor& probs,
                                                    const c10::optional<torch::Tensor>& out, int64_t heads, double scale) {
  const int64_t rows = q.size(0), width = q.size(2), lq = q.stride(1), lk = k.stride(1), lv = v.stride(1), ld = 3 * width;
  auto dqkv = torch::empty({rows, F, ld}, q.options());
  auto masked = out ? torch::empty_like(grad) : torch::empty({0}, grad.options());
  const float *Q0 = q.data_ptr<float>(), *K0 = k.data_ptr<float>(), *V0 = v.data_ptr<float>();
  const float *G = grad.data_ptr<float>(), *PR = probs.data_ptr<float>();
  const float* OUT = out ? out->data_ptr<float>() : nullptr;
  float *DQKV = dqkv.data_ptr<float>(), *GM = out ? masked.data_ptr<float>() : nullptr;
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, rows, 16, [&](int64_t b0, int64_t b1) {
    alignas(64) float gT[D * L];
    std::vector<float> ds_buffer(static_cast<size_t>(heads) * F * L);
    float* ds = ds_buffer.data();  // dS^T per head: ds[h][j][i]
    vf d[F];
    for (int64_t b = b0; b < b1; ++b) {
      const float *Q = Q0 + b * F * lq, *K = K0 + b * F * lk, *V = V0 + b * F * lv;
      float* DQ = DQKV + b * F * ld;  // this row's dq; its dk at DQ + width, its dv at DQ + 2 * width
      const int64_t at = b * F * width;
      const float* row_grad = G + at;
      if (OUT != nullptr) {  // through the ReLU: the gradient where the output is positive
        for (int64_t o = 0; o < F * width; o += 16) vstore(GM + at + o, vload(OUT + at + o) > 0.f ? vload(G + at + o) : bc(0.f));
        row_grad = GM + at;
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float* p = PR + (b * heads + h) * F * L;
        const float* g = row_grad + h * D;
        transpose<F, D>(g, width, gT);
        products_t<F, D>(gT, V + h * D, lv, d);  // dP^T
        vf dot = bc(0.f);
        for (int j = 0; j < F; ++j) dot += vload(p + j * L) * d[j];
        for (int j = 0; j < F; ++j) vstore(ds + (h * F + j) * L, vload(p + j * L) * (d[j] - dot) * sc);
        combine<F, D, false>(p, g, width, DQ + 2 * width + h * D, ld);  // dv[j] = sum_i P[i][j] g[i]
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float* s = ds + h * F * L;
        combine<F, D, true>(s, K + h * D, lk, DQ + h * D, ld);           // dq[i] = sum_j dS[i][j] k[j]
        combine<F, D, false>(s, Q + h * D, lq, DQ + width + h * D, ld);  // dk[j] = sum_i dS[i][j] q[i]
      }
    }
  });
  return {dqkv, masked};
}

// A float32 CPU tensor of `shape`: contiguous, or (`sliced`) [rows, fields, n] with fields at any stride >= n and the
// rows at fields times that.
void check(const torch::Tensor& t, at::IntArrayRef shape, const char* name, bool sliced = false) {
  const bool layout = t.is_contiguous() || (sliced && t.dim() == 3 && t.stride(2) == 1 && t.stride(1) >= t.size(2) &&
                                            t.stride(0) == t.size(1) * t.stride(1));
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && layout, name,
              sliced ? ": a float32 CPU tensor, contiguous or a slice of the last dimension, is needed"
                     : ": a contiguous float32 CPU tensor is needed");
  TORCH_CHECK(t.sizes() == shape, name, ": shape ", t.sizes(), " differs from ", shape);
}

template <typename Fn>
auto dispatch(int64_t fields, int64_t dim, Fn&& fn) {
#define FIELD_CASES(D)                                          \
  switch (fields) {                                             \
    case 1: return fn(std::integral_constant<int, 1>{}, std::integral_constant<int, D>{});   \
    case 2: return fn(std::integral_constant<int, 2>{}, std::integral_constant<int, D>{});   \
    case 3: return fn(std::integral_constant<int, 3>{}, std::integral_constant<int, D>{});   \
    case 4: return fn(std::integral_constant<int, 4>{}, std::integral_constant<int, D>{});   \
    case 5: return fn(std::integral_constant<int, 5>{}, std::integral_constant<int, D>{});   \
    case 6: return fn(std::integral_constant<int, 6>{}, std::integral_constant<int, D>{});   \
    case 7: return fn(std::integral_constant<int, 7>{}, std::integral_constant<int, D>{});   \
    case 8: return fn(std::integral_constant<int, 8>{}, std::integral_constant<int, D>{});   \
    case 9: return fn(std::integral_constant<int, 9>{}, std::integral_constant<int, D>{});   \
    case 10: return fn(std::integral_constant<int, 10>{}, std::integral_constant<int, D>{}); \
    case 11: return fn(std::integral_constant<int, 11>{}, std::integral_constant<int, D>{}); \
    case 12: return fn(std::integral_constant<int, 12>{}, std::integral_constant<int, D>{}); \
    case 13: return fn(std::integral_constant<int, 13>{}, std::integral_constant<int, D>{}); \
    case 14: return fn(std::integral_constant<int, 14>{}, std::integral_constant<int, D>{}); \
    case 15: return fn(std::integral_constant<int, 15>{}, std::integral_constant<int, D>{}); \
    case 16: return fn(std::integral_constant<int, 16>{}, std::integral_constant<int, D>{}); \
  }
  if (dim == 16) { FIELD_CASES(16) }
  if (dim == 32) { FIELD_CASES(32) }
  if (dim == 64) { FIELD_CASES(64) }
#undef FIELD_CASES
  TORCH_CHECK(false, "fields ", fields, " (1-16) or head dim ", dim, " (16, 32, 64) outside the kernel's range");
}

void check_qkv(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t heads) {
  TORCH_CHECK(q.dim() == 3 && heads > 0 && q.size(2) % heads == 0, "q: [rows, fields, heads * d] expected");
  check(q, q.sizes(), "q", true), check(k, q.sizes(), "k", true), check(v, q.sizes(), "v", true);
}

std::tuple<torch::Tensor, torch::Tensor> forward(torch::Tensor q, torch::Tensor k, torch::Tensor v, int64_t heads, double scale,
                                                 c10::optional<torch::Tensor> residual) {
  check_qkv(q, k, v, heads);
  if (residual) check(*residual, q.sizes(), "residual");
  return dispatch(q.size(1), q.size(2) / heads, [&](auto f, auto d) {
    return forward_t<decltype(f)::value, decltype(d)::value>(q, k, v, residual, heads, scale);
  });
}

std::tuple<torch::Tensor, torch::Tensor> backward(torch::Tensor grad, torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor probs,
                                                  int64_t heads, double scale, c10::optional<torch::Tensor> out) {
  check_qkv(q, k, v, heads), check(grad, q.sizes(), "grad");
  if (out) check(*out, q.sizes(), "out");
  TORCH_CHECK(probs.is_contiguous() && probs.numel() == q.size(0) * heads * q.size(1) * L, "probs: the forward's");
  return dispatch(q.size(1), q.size(2) / heads, [&](auto f, auto d) {
    return backward_t<decltype(f)::value, decltype(d)::value>(grad, q, k, v, probs, out, heads, scale);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "per-head field attention: (out, probs)", py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("heads"), py::arg("scale"), py::arg("residual") = py::none());
  m.def("backward", &backward, "its gradients: (dqkv, the gradient through the ReLU given out, else an empty tensor)",
        py::arg("grad"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("probs"), py::arg("heads"), py::arg("scale"),
        py::arg("out") = py::none());
}
