// What a chat record says beyond the assistant's text, and what of a chat
// item stays out of the request: the pure helpers behind --chat's records.
//
// Record fields of a chat completion (all optional, as the server sends them):
//   finish_reason  choices[0].finish_reason ("stop", "length", "tool_calls"...)
//   model, id      the response's model and id
//   prompt_tokens, completion_tokens, total_tokens   from usage
// A reply whose message has no text content (content null: tool calls, a
// refusal) is an ok record whose result is the whole message object, e.g.
//   {"role":"assistant","content":null,"tool_calls":[...]}
// so that nothing the model said is lost; a message with neither text, tool
// calls, a function call nor a refusal is an error.
//
// Item fields: a jsonl chat item may carry "custom_id" and "metadata" next to
// "messages" (as in OpenAI's Batch files). They are not API parameters (the
// API refuses custom_id), so they are taken out of the request and copied
// into the record: custom_id as it is, metadata as JSON.
#ifndef FANMAP_WORKER_CHAT_RECORD_H_
#define FANMAP_WORKER_CHAT_RECORD_H_

#include <nlohmann/json.hpp>
#include <string>

#include "common/protocol.h"
#include "common/status.h"

namespace fanmap {

// Reads choices[0] of an OpenAI chat completion: `*value` is the message's
// text, or (`*value_is_json`) the message object as one-line JSON; the record
// fields above go into `*extra`.
Status ReadChatReply(const std::string& body, std::string* value, bool* value_is_json,
                     Result::Extra* extra);

}  // namespace fanmap

#endif  // FANMAP_WORKER_CHAT_RECORD_H_
