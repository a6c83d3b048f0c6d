-- wrk POSTing one chat completion request per call (the ceiling of the HTTP workload):
--   wrk -t 2 -c 1000 -d 3s -s bench/peers/wrk_chat.lua http://127.0.0.1:PORT/v1/chat/completions
wrk.method = "POST"
wrk.body = '{"model":"mock-model","messages":[{"role":"user","content":"prompt 1"}]}'
wrk.headers["Content-Type"] = "application/json"
