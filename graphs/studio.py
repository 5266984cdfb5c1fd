"""The graph as LangGraph's servers load it: `langgraph dev`, LangGraph Studio and LangGraph Platform read
`langgraph.json`, which points at `graph` here.

The server attaches its own checkpointer (the state is plain data, so any works) and passes each assistant's
`context` as JSON, which becomes a `RapidContext`:

    {"captioner": "openai:qwen2.5-vl-7b@http://gpu:8000/v1", "reasoner": "openai:qwen3-8b@http://gpu:8001/v1",
     "mode": "qcap+sol", "reasoner_gen": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 4096}}

Inputs are what `graph.invoke` takes: {"image": "<path or data URL>", "question": "...", "answer": "..."}. Each run
on a thread is one sample: what its input leaves out is not carried over from the thread's last run, whose state
stays in the thread's history. The server refuses blocking calls on its event loop, so the nodes make none.
"""

from rapid_agent.graphs.graph import get_graph

graph = get_graph()
