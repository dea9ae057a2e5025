"""SlimGUI's language-model family: depth pruning of transformers LMs (Shortened LLaMA).

This module is the plugin manifest only; it imports nothing heavy.  The code behind each entry is
imported the first time it is used.
"""

from slimgui.core.plugins import AdapterSpec, CriterionSpec, DemoSpec, EvaluatorSpec, Plugin, PreviewerSpec

plugin = Plugin(
    name="llm",
    version="1",
    description="Depth pruning of transformers language models (LLaMA, Mistral, Qwen2, GPT-2, OPT, BERT-style)",
    adapters=[
        AdapterSpec("transformers", "llm", "slimgui_llm.adapter:TransformersAdapter", "slimgui_llm.probe:match",
                    "transformers folders (config.json + safetensors) or hub ids whose model is a stack of blocks"),
    ],
    criteria=[
        CriterionSpec("ppl", "slimgui_llm.criteria:PerplexityDrop",
                      "perplexity on calibration text with the block removed (encoders: change of final hidden states)",
                      families=("llm",)),
        CriterionSpec("bi", "slimgui_llm.criteria:BlockInfluence",
                      "block influence: mean 1 - cos(h_in, h_out) over tokens", families=("llm",)),
    ],
    evaluators=[EvaluatorSpec("perplexity", "slimgui_llm.evaluate:perplexity",
                              "perplexity on a text file (sliding windows)", families=("llm",))],
    previewers=[PreviewerSpec("generate", "slimgui_llm.evaluate:generate_text", "text",
                              "greedy continuation of a prompt", families=("llm",))],
    demos=[DemoSpec("llm", "slimgui_llm.demo:ensure_demo",
                    "12-block LLaMA trained on the Python standard library's source")],
)
