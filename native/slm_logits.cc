// slm's own N-API addon: exact log-probabilities from the output rows of a llama_context that
// node-llama-cpp owns. node-llama-cpp 3.21.1 hands rows to JavaScript only through its sampler (a full
// sort, a float32 softmax and a JS array per row); this reads llama_get_logits_ith directly and does
// the log-softmax in double, as llama-perplexity does.
//
// The context comes from node-llama-cpp's AddonContext object (LlamaContext._ctx): napi_unwrap gives
// the C++ instance, whose layout is taken from node-llama-cpp's own headers (pinned exactly). Before a
// context pointer is trusted, its AddonContext must point at the AddonModel of the loaded model and
// the llama_context must belong to that model (checkBinding); slm then compares values with the slow
// exact path on a probe before using the addon at all (src/backends/llama/native/).
//
// Rows are read on the calling (main) thread: the caller guarantees that no decode or sample of the
// same context runs meanwhile, and that the rows are those of the context's last decode.
#include <cmath>
#include <cstdint>
#include <vector>

#include "napi.h"
#include "llama.h"
#include "AddonContext.h"
#include "AddonModel.h"

namespace {

// Bumped whenever the JavaScript-facing calls change; the loader refuses another version.
constexpr int32_t kApiVersion = 2;

struct Row {
  const float* logits;
  double max;
  double logSum;  // ln Σ exp(logit − max)
  int32_t top;    // arg-max, lowest id among equal maxima (as llama-perplexity)
};

template <typename T>
T* unwrap(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsObject()) {
    Napi::TypeError::New(env, std::string(what) + " is not an object").ThrowAsJavaScriptException();
    return nullptr;
  }
  void* p = nullptr;
  if (napi_unwrap(env, v, &p) != napi_ok || p == nullptr) {
    Napi::TypeError::New(env, std::string(what) + " is not a wrapped native object").ThrowAsJavaScriptException();
    return nullptr;
  }
  return static_cast<T*>(p);
}

// The live llama_context behind an AddonContext object, or nullptr (with a JS exception) when it is
// disposed or not loaded. Re-read on every call: node-llama-cpp may have disposed the context since.
llama_context* contextOf(Napi::Env env, Napi::Value v) {
  auto* ac = unwrap<AddonContext>(env, v, "context");
  if (ac == nullptr) return nullptr;
  if (ac->disposed || !ac->contextLoaded || ac->ctx == nullptr) {
    Napi::Error::New(env, "the llama context is disposed").ThrowAsJavaScriptException();
    return nullptr;
  }
  return ac->ctx;
}

int32_t vocabOf(llama_context* ctx) {
  return llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
}

// `exps`, when given, receives exp(logit − max) of every token (reused by klRows instead of a second exp).
bool readRow(Napi::Env env, llama_context* ctx, int32_t index, int32_t nVocab, Row& row, std::vector<double>* exps = nullptr) {
  row.logits = llama_get_logits_ith(ctx, index);
  if (row.logits == nullptr) {
    Napi::RangeError::New(env, "no output row " + std::to_string(index) + " in the last batch").ThrowAsJavaScriptException();
    return false;
  }
  const float* l = row.logits;
  int32_t top = 0;
  float max = l[0];
  for (int32_t i = 1; i < nVocab; i++) {
    if (l[i] > max) {
      max = l[i];
      top = i;
    }
  }
  double sum = 0;
  if (exps != nullptr) {
    exps->resize(size_t(nVocab));
    double* e = exps->data();
    for (int32_t i = 0; i < nVocab; i++) sum += (e[i] = std::exp(double(l[i]) - double(max)));
  } else {
    for (int32_t i = 0; i < nVocab; i++) sum += std::exp(double(l[i]) - double(max));
  }
  row.max = max;
  row.logSum = std::log(sum);
  row.top = top;
  return true;
}

inline double logProb(const Row& r, int32_t token) { return double(r.logits[token]) - r.max - r.logSum; }

bool inVocab(Napi::Env env, int32_t token, int32_t nVocab) {
  if (token >= 0 && token < nVocab) return true;
  Napi::RangeError::New(env, "token " + std::to_string(token) + " is out of the vocabulary").ThrowAsJavaScriptException();
  return false;
}

// checkBinding(addonContext, addonModel) → {nVocab, nCtx, apiVersion}. Throws when the AddonContext does
// not belong to the AddonModel or the llama_context to its model: a sign of another node-llama-cpp.
Napi::Value CheckBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* ac = unwrap<AddonContext>(env, info[0], "context");
  if (ac == nullptr) return env.Undefined();
  auto* am = unwrap<AddonModel>(env, info[1], "model");
  if (am == nullptr) return env.Undefined();
  // Compared before anything behind these pointers is read.
  if (ac->model != am) {
    Napi::Error::New(env, "the context's native object does not point at the model's (unexpected node-llama-cpp layout)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (ac->disposed || !ac->contextLoaded || ac->ctx == nullptr || am->model == nullptr) {
    Napi::Error::New(env, "the llama context or model is not loaded").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (llama_get_model(ac->ctx) != am->model) {
    Napi::Error::New(env, "the llama context does not belong to the model (unexpected node-llama-cpp layout)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("nVocab", vocabOf(ac->ctx));
  out.Set("nCtx", Napi::Number::New(env, double(llama_n_ctx(ac->ctx))));
  out.Set("apiVersion", kApiVersion);
  return out;
}

// scoreRows(addonContext, indexes: Int32Array, targets: Int32Array, logprobs: Float64Array, tops: Int32Array)
// For each output row indexes[k] of the last decode: logprobs[k] = ln p(targets[k]), tops[k] = arg-max.
Napi::Value ScoreRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = contextOf(env, info[0]);
  if (ctx == nullptr) return env.Undefined();
  auto indexes = info[1].As<Napi::Int32Array>();
  auto targets = info[2].As<Napi::Int32Array>();
  auto logprobs = info[3].As<Napi::Float64Array>();
  auto tops = info[4].As<Napi::Int32Array>();
  size_t n = indexes.ElementLength();
  if (targets.ElementLength() != n || logprobs.ElementLength() < n || tops.ElementLength() < n) {
    Napi::RangeError::New(env, "scoreRows: array lengths differ").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int32_t nVocab = vocabOf(ctx);
  Row row;
  for (size_t k = 0; k < n; k++) {
    if (!inVocab(env, targets[k], nVocab) || !readRow(env, ctx, indexes[k], nVocab, row)) return env.Undefined();
    logprobs[k] = logProb(row, targets[k]);
    tops[k] = row.top;
  }
  return env.Undefined();
}

// klRows(baseContext, baseIndexes, context, indexes, targets, kl, baseLogprobs, logprobs, baseTops, tops)
// For rows baseIndexes[k] (base) and indexes[k] (model): kl[k] = KL(P_base ‖ P) over the whole
// vocabulary in nats, each model's ln p(targets[k]) and arg-max. One exp per token and row: the base's
// probabilities come from its sum pass.
Napi::Value KlRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* base = contextOf(env, info[0]);
  if (base == nullptr) return env.Undefined();
  auto baseIndexes = info[1].As<Napi::Int32Array>();
  llama_context* ctx = contextOf(env, info[2]);
  if (ctx == nullptr) return env.Undefined();
  auto indexes = info[3].As<Napi::Int32Array>();
  auto targets = info[4].As<Napi::Int32Array>();
  auto kl = info[5].As<Napi::Float64Array>();
  auto baseLogprobs = info[6].As<Napi::Float64Array>();
  auto logprobs = info[7].As<Napi::Float64Array>();
  auto baseTops = info[8].As<Napi::Int32Array>();
  auto tops = info[9].As<Napi::Int32Array>();
  size_t n = indexes.ElementLength();
  if (baseIndexes.ElementLength() != n || targets.ElementLength() != n || kl.ElementLength() < n || baseLogprobs.ElementLength() < n || logprobs.ElementLength() < n ||
      baseTops.ElementLength() < n || tops.ElementLength() < n) {
    Napi::RangeError::New(env, "klRows: array lengths differ").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int32_t nVocab = vocabOf(ctx);
  if (vocabOf(base) != nVocab) {
    Napi::RangeError::New(env, "klRows: the models' vocabularies differ").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Row b, m;
  std::vector<double> eb;
  for (size_t k = 0; k < n; k++) {
    if (!inVocab(env, targets[k], nVocab) || !readRow(env, base, baseIndexes[k], nVocab, b, &eb) || !readRow(env, ctx, indexes[k], nVocab, m)) return env.Undefined();
    // Σ pb (lb − lm) with pb = eb / Σeb, lb − lm = (xb − maxb − logSumb) − (xm − maxm − logSumm).
    // Grouped so that identical rows give exactly 0, as the sum over lb − lm does.
    const double shift = (m.max - b.max) + (m.logSum - b.logSum);
    const float* xb = b.logits;
    const float* xm = m.logits;
    double sum = 0;
    for (int32_t i = 0; i < nVocab; i++) sum += eb[i] * (double(xb[i]) - double(xm[i]));
    const double v = sum / std::exp(b.logSum) + shift;
    kl[k] = v > 0 ? v : 0;
    baseLogprobs[k] = logProb(b, targets[k]);
    logprobs[k] = logProb(m, targets[k]);
    baseTops[k] = b.top;
    tops[k] = m.top;
  }
  return env.Undefined();
}

// topRow(addonContext, index, target, topK) → Float64Array [ln p(target), token₀, ln p₀, token₁, ln p₁, …]:
// the topK most likely tokens, most likely first, the lowest id first among equal logits.
Napi::Value TopRow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  llama_context* ctx = contextOf(env, info[0]);
  if (ctx == nullptr) return env.Undefined();
  int32_t index = info[1].As<Napi::Number>().Int32Value();
  int32_t target = info[2].As<Napi::Number>().Int32Value();
  int32_t topK = info[3].As<Napi::Number>().Int32Value();
  const int32_t nVocab = vocabOf(ctx);
  Row row;
  if (!inVocab(env, target, nVocab) || !readRow(env, ctx, index, nVocab, row)) return env.Undefined();
  if (topK < 0) topK = 0;
  if (topK > nVocab) topK = nVocab;
  // Partial insertion into a short sorted list: topK is small (≤ 20 for OpenAI's logprobs).
  std::vector<int32_t> best;
  best.reserve(size_t(topK) + 1);
  const float* l = row.logits;
  auto before = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
  for (int32_t i = 0; i < nVocab && topK > 0; i++) {
    if (int32_t(best.size()) == topK && !before(i, best.back())) continue;
    size_t at = best.size();
    while (at > 0 && before(i, best[at - 1])) at--;
    best.insert(best.begin() + at, i);
    if (int32_t(best.size()) > topK) best.pop_back();
  }
  auto out = Napi::Float64Array::New(env, 1 + 2 * best.size());
  out[0] = logProb(row, target);
  for (size_t j = 0; j < best.size(); j++) {
    out[1 + 2 * j] = best[j];
    out[2 + 2 * j] = logProb(row, best[j]);
  }
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("apiVersion", kApiVersion);
  exports.Set("checkBinding", Napi::Function::New(env, CheckBinding));
  exports.Set("scoreRows", Napi::Function::New(env, ScoreRows));
  exports.Set("klRows", Napi::Function::New(env, KlRows));
  exports.Set("topRow", Napi::Function::New(env, TopRow));
  return exports;
}

}  // namespace

NODE_API_MODULE(slm_logits, Init)
