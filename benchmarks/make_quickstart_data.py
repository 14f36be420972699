"""Write the quickstart dataset: support tickets of a fictional utility, labelled by topic.

    python benchmarks/make_quickstart_data.py   # writes lora_adapt/examples/support_tickets_{train,test}.jsonl

Deterministic (seeded): running it again rewrites the same file byte for byte. Everything here is
written for this repository: "Brightwater Utilities", its streets and customers are invented.

The task is meant to be learnable but not trivial:
- the test file is written with *other phrasings* than the training file (TEST_TEMPLATES vs
  TEMPLATES), as new customers would write: a model must generalise beyond the training wording,
  which is where a pretrained encoder should beat a bag-of-words model (and where a bag-of-words
  model trained on templates would otherwise score 100% on a random split of the same templates);
- about half of the tickets also mention another topic in passing ("I pay by direct debit", "we had
  a power cut last week") without being about it;
- some templates use another topic's words for their own intent (a complaint names the bill it is
  about, a billing query mentions the meter reading printed on the bill).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20240611
COUNTS = {
    "billing": 104,
    "outage": 96,
    "meter": 80,
    "moving": 72,
    "payment": 72,
    "complaint": 56,
}  # train file
TEST_COUNTS = {"billing": 32, "outage": 30, "meter": 25, "moving": 22, "payment": 22, "complaint": 19}
EXAMPLES = Path(__file__).resolve().parents[1] / "lora_adapt" / "examples"

SLOTS: dict[str, list[str]] = {
    "bill": ["bill", "invoice", "statement", "account statement", "latest bill", "quarterly bill"],
    "month": [
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "January",
        "February",
    ],
    "higher": [
        "much higher",
        "almost double what it normally is",
        "way more",
        "three times bigger",
        "a lot more",
        "about 80 pounds more",
    ],
    "fee": [
        "late payment fee",
        "service charge",
        "connection fee",
        "standing charge",
        "admin fee",
        "reconnection charge",
        "paper billing fee",
    ],
    "charged": ["charged", "billed", "debited", "invoiced"],
    "period": ["month", "quarter", "billing period", "period", "reading period"],
    "supply": ["power", "electricity", "water", "gas", "electric", "mains water"],
    "out": ["out", "off", "down", "gone", "cut off", "not working"],
    "time": [
        "this morning",
        "last night",
        "6am",
        "yesterday evening",
        "two hours ago",
        "lunchtime",
        "about midnight",
        "early today",
        "since the storm",
    ],
    "fault": ["outage", "blackout", "power cut", "line fault", "burst main", "supply failure", "cable fault"],
    "street": [
        "Alder Road",
        "Beacon Street",
        "Kestrel Lane",
        "Mill Row",
        "Orchard Close",
        "Quarry Hill",
        "Station Parade",
        "Willow Crescent",
        "Harbour View",
        "Fenwick Avenue",
    ],
    "area": ["Eastfield", "Marston", "the old town", "Northgate", "Lower Brook", "Ashby"],
    "hours": ["5", "8", "12", "18", "24", "30"],
    "meter": ["meter", "gas meter", "electric meter", "water meter", "smart meter", "prepayment meter"],
    "display": [
        "an error code E04",
        "dashes instead of numbers",
        "a flashing red light",
        "the same number for weeks",
        "a reading that goes backwards",
        "ERR on the screen",
    ],
    "reading": ["meter reading", "reading", "current reading", "photo of the dial"],
    "num": ["04512", "18833", "00917", "23410", "7765", "55021", "31200"],
    "tech": ["engineer", "technician", "fitter", "someone"],
    "move": ["moving", "relocating", "moving house", "moving out"],
    "date": [
        "the 3rd",
        "the 14th",
        "Friday",
        "next Monday",
        "the end of the month",
        "1 September",
        "the 21st",
    ],
    "transfer": ["transfer", "move", "switch over", "carry over"],
    "plan": ["payment plan", "instalment plan", "payment arrangement", "monthly arrangement"],
    "card": ["card", "debit card", "credit card", "bank card"],
    "debit": ["direct debit", "automatic payments", "autopay", "standing order"],
    "day": ["1st", "15th", "last working day", "28th"],
    "amount": ["50 pounds", "half", "100", "what I can afford", "20 a week"],
    "nth": ["fourth", "fifth", "third", "sixth"],
    "staff": ["agent", "advisor", "person on the phone", "call handler", "manager"],
    "rude": ["rude", "dismissive", "sarcastic", "unhelpful and rude", "condescending"],
    "weeks": ["two", "three", "four", "six"],
    "name": ["Priya", "Tom", "Agnieszka", "Mohammed", "Siobhan", "Luis", "Grace", "Dev", "Hannah", "Kwame"],
    "acct": ["BW-2291", "BW-7730", "BW-1045", "BW-9902", "BW-5518", "BW-3367"],
}

TEMPLATES: dict[str, list[str]] = {
    "billing": [
        "My {bill} for {month} is {higher} than usual.",
        "I was {charged} twice for the same {period}.",
        "Why does my {bill} show a {fee} I never agreed to?",
        "The {bill} says we used a huge amount but we were away on holiday the whole {period}.",
        "There is an estimated charge on my {bill} that makes no sense.",
        "Can someone explain the {fee} on my {bill}?",
        "I think I'm on the wrong tariff, the unit price on my {bill} went up without notice.",
        "Last {period}'s amount has been added to my {bill} again even though it was paid.",
        "I was promised a refund but the credit never showed up on my {bill}.",
        "You {charged} me for {supply} at an address I left months ago.",
        "The total on the {bill} doesn't add up, the figures on page two are different.",
        "why is my {bill} so high this {period}",
        "After I moved out you sent a final {bill} that includes the new tenant's usage.",
        "The reading printed on my {bill} is not what the {meter} says.",
        "My {debit} took {higher} this {period}, the {bill} must be wrong.",
        "We had no {supply} for two days during the {fault} but the {bill} charges us for full usage.",
        "You {charged} a {fee} even though my payment went through on time.",
    ],
    "outage": [
        "The {supply} has been {out} since {time}.",
        "We have no {supply} on {street} since {time}.",
        "Is there a {fault} in {area}? Everything went dark {time}.",
        "Water pressure dropped to nothing {time} and the taps are dry.",
        "The whole street lost {supply} {time} and there's no update on your website.",
        "When will the {supply} be back? We've been without it for {hours} hours.",
        "Houses on {street} are all dark, looks like a {fault}.",
        "No {supply} at all in my flat, the neighbours are the same.",
        "Is the {fault} in {area} being fixed? We still have nothing.",
        "{supply} keeps cutting out every few minutes since {time}.",
        "there is a {fault} near {street}, sparks from the box on the corner",
        "My elderly mother has had no {supply} since {time}, when is it coming back?",
        "The {meter} has credit on it but there's still no {supply} in the house.",
        "I paid my {bill} yesterday so why has the {supply} gone {out}?",
        "We only moved in on {date} and the {supply} is already {out}.",
        "Not a complaint, just reporting that the {supply} is {out} on {street} again.",
    ],
    "meter": [
        "My {meter} is showing {display}.",
        "I'd like to submit a {reading}: {num}.",
        "The screen on the {meter} is completely blank.",
        "Can you book an {tech} to fit a smart meter?",
        "I think the {meter} is running fast, usage doubled though nothing changed at home.",
        "The {meter} in the hallway keeps beeping at night.",
        "Nobody has come to read the {meter} in months.",
        "My smart meter stopped sending readings to the in-home display.",
        "The seal on the {meter} looks broken, should I be worried?",
        "Here is my {reading} for {month}: {num}.",
        "The {meter} was swapped last week and the {tech} didn't leave the final reading of the old one.",
        "can someone check my {meter}, the numbers look wrong",
        "My {bill} is fine, I just want the {meter} checked because it makes a clicking noise.",
        "Before I move out I need someone to take a final {reading} of the {meter}.",
        "The {fault} last week reset my {meter} and now it shows {display}.",
        "Can the {meter} be moved outside? The {tech} needs to get in every time.",
    ],
    "moving": [
        "I'm {move} to {street} on {date}, please {transfer} my account.",
        "We are moving out on {date}, please close the account.",
        "I've just moved into a flat on {street} and need the {supply} in my name.",
        "Please {transfer} my service from my old flat to my new address on {street}.",
        "We're selling the house on {date}, what do I need to do with the account?",
        "The previous tenant's name is still on the account at my new home.",
        "Landlord here: the tenant leaves on {date}, please put the property in my name until new tenants arrive.",
        "I'm {move} abroad on {date} and want to end my contract.",
        "My partner and I are {move} in together, can we merge our two accounts at {street}?",
        "Who do I tell that I'm {move}? The new place on {street} is also supplied by you.",
        "keys to the new house on {date}, need {supply} connected from that day",
        "Please send the final {bill} to my new address on {street}, I moved on {date}.",
        "I've moved and I'd like my {debit} to continue at the new property.",
        "I'm {move} on {date} and will give you a final {reading} then.",
        "We moved in on {date} and there's a {meter} reading from the old tenant on the account.",
    ],
    "payment": [
        "Can I set up a {plan} for the amount I owe?",
        "My {card} was declined when I tried to pay online.",
        "I want to switch to {debit} on the {day} of each month.",
        "I lost my job and can't pay in full, is there any hardship support?",
        "How do I change the bank account my {debit} comes from?",
        "Can I pay {amount} now and the rest next month?",
        "Your payment page keeps timing out when I enter my {card} details.",
        "Please cancel my {debit}, I'll pay by bank transfer from now on.",
        "Is it possible to move my payment date to the {day}?",
        "I'm struggling to keep up, could we agree a {plan}?",
        "The app won't accept my {card}, how else can I pay?",
        "can i spread the cost over a few months",
        "The {bill} is correct, I just can't pay it all at once, can we do a {plan}?",
        "I moved my bank account, how do I update the {debit}?",
        "I want to pay off the {fee} by {card} today.",
        "My {debit} failed this month because of a bank error, how do I pay now?",
    ],
    "complaint": [
        "This is the {nth} time I've called and nobody has sorted it out.",
        "The {staff} I spoke to was {rude} and hung up on me.",
        "I want to make a formal complaint about how my case was handled.",
        "I've been waiting {weeks} weeks for a callback that never came.",
        "Absolutely unacceptable service, I want to speak to a manager.",
        "Your {tech} left a mess in my garden and didn't even apologise.",
        "If I don't hear back this week I'm taking this to the ombudsman.",
        "Three different agents gave me three different answers about my {bill}.",
        "I complained about the {fault} handling {weeks} weeks ago and still no reply.",
        "The {staff} promised to fix my {bill} and then did nothing, I'm fed up.",
        "worst customer service I have ever had, {nth} email with no answer",
        "The {fault} was fixed but nobody told us anything for {hours} hours, that's not good enough.",
        "I was {charged} twice and when I called, the {staff} was {rude}.",
        "Your {tech} turned up {weeks} hours late to fit the {meter} and blamed me.",
        "I gave you my {reading} {nth} times and you keep sending estimated bills, I'm furious.",
        "Moving house was stressful enough without your {staff} losing my paperwork twice.",
    ],
}

TEST_TEMPLATES: dict[str, list[str]] = {  # phrasings used only in the test file
    "billing": [
        "Just opened my {bill} and nearly fell over, it's {higher} compared to last {period}.",
        "Looks like I've paid for the same {period} two times.",
        "What is this {fee}? Nobody mentioned it when I signed up.",
        "The amount you're asking for this {period} can't be right, we've hardly been home.",
        "Please double-check my {bill}, the figure seems to be a guess rather than real usage.",
        "I was told I'd get money back but my balance hasn't changed.",
        "The price per unit on my {bill} is not what I signed up for.",
        "Query about my {bill}: the numbers don't match what I expected.",
    ],
    "outage": [
        "Lights went out across the whole building {time}.",
        "Nothing's coming out of the taps at {street}.",
        "Our {supply} dropped {time} and hasn't come back.",
        "Is something wrong with the network in {area}? We're without {supply}.",
        "Fridge and heating are off, no {supply} since {time}.",
        "Any estimate for restoring {supply} to {street}?",
        "Half the neighbourhood is in the dark right now.",
        "There's been no {supply} here for {hours} hours.",
    ],
    "meter": [
        "The little display on my {meter} just says {display}.",
        "Sending you today's numbers from the {meter}: {num}.",
        "Something's off with my {meter}, it keeps counting even when everything is switched off.",
        "Could someone come and swap my old {meter} for a smart one?",
        "My in-home display lost its connection to the {meter}.",
        "The {meter} cupboard door is jammed so I can't read it.",
        "Is it normal for the {meter} to flash like this?",
        "Latest figures from the {meter} are {num}.",
    ],
    "moving": [
        "New home from {date} on {street}, can my supply follow me?",
        "Please end my supply at the current address, I'm leaving on {date}.",
        "Just got the keys to a place on {street}, how do I get the account set up?",
        "We're relocating for work on {date}, what happens to our account?",
        "Change of address please, from {date} I'll be at {street}.",
        "The house is sold and we hand over on {date}.",
        "I'm the new occupier at {street}, please take the old name off.",
        "I need to close the account for my late father's flat, it's being emptied on {date}.",
    ],
    "payment": [
        "Is there a way to split what I owe into smaller monthly amounts?",
        "Online checkout rejected my {card} three times.",
        "Please take the money automatically each month instead of me paying by hand.",
        "Money is tight at the moment, what help can you offer with what I owe?",
        "I've got a new bank, where do I send the details for my {debit}?",
        "Could I pay part today and clear the rest on payday?",
        "Website error every time I try to pay with my {card}.",
        "Stop taking payments from my account, I'll pay another way.",
    ],
    "complaint": [
        "I've phoned you {nth} times about this and I'm getting nowhere.",
        "Your {staff} talked down to me and I want it on record.",
        "Please treat this email as an official complaint.",
        "Still no call back after {weeks} weeks, this is a joke.",
        "I'd like this escalated to someone senior, I'm very unhappy.",
        "Your contractor damaged my fence and nobody wants to take responsibility.",
        "Every person I speak to tells me something different, it's ridiculous.",
        "Appalling treatment from your customer service team.",
    ],
}

ASIDES: dict[str, list[str]] = {  # mentions of a topic in passing, added to tickets of *other* topics
    "billing": [
        "My last bill was fine.",
        "I always pay the bill on time.",
        "I checked my statement online first.",
    ],
    "outage": [
        "We had a power cut last week too.",
        "Since the storm everything has been a bit unreliable.",
        "The outage map on your site wouldn't load.",
    ],
    "meter": [
        "The meter was replaced in spring.",
        "I can send a meter photo if needed.",
        "We have a smart meter.",
    ],
    "moving": ["I moved in last year.", "We're thinking of moving soon anyway.", "I only just moved here."],
    "payment": [
        "I pay by direct debit.",
        "My payments are all up to date.",
        "I'm on a payment plan already.",
    ],
    "complaint": [
        "I'm not happy about how long this is taking.",
        "Last time the phone queue was awful.",
        "I'm not trying to complain, just asking.",
    ],
}
OPENERS = [
    "",
    "",
    "",
    "Hi,",
    "Hello,",
    "Good morning.",
    "Dear Brightwater,",
    "Hi there -",
    "To whom it may concern,",
]
CLOSERS = [
    "",
    "",
    "",
    "Thanks.",
    "Please advise.",
    "Account {acct}.",
    "Regards, {name}",
    "Thank you!",
    "Cheers",
]


def fill(template: str, rng: random.Random) -> str:
    out = template
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        out = out[:start] + rng.choice(SLOTS[out[start + 1 : end]]) + out[end + 1 :]
    return out


def ticket(label: str, templates: dict[str, list[str]], rng: random.Random) -> str:
    parts = [rng.choice(OPENERS), fill(rng.choice(templates[label]), rng)]
    for _ in range(2):
        if rng.random() < 0.4:
            other = rng.choice([k for k in ASIDES if k != label])
            parts.insert(rng.choice([1, 2]), rng.choice(ASIDES[other]))
    parts.append(fill(rng.choice(CLOSERS), rng))
    text = " ".join(p for p in parts if p)
    text = text[0].upper() + text[1:]
    if rng.random() < 0.12:  # informal: all lower case, no final full stop
        text = text.lower().rstrip(".")
    return text


def generate(counts: dict[str, int], templates: dict[str, list[str]], seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for label, count in counts.items():
        made = 0
        while made < count:
            text = ticket(label, templates, rng)
            if text.lower() not in seen:
                seen.add(text.lower())
                rows.append({"text": text, "label": label})
                made += 1
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=EXAMPLES)
    args = parser.parse_args()
    for name, counts, templates, seed in (
        ("train", COUNTS, TEMPLATES, SEED),
        ("test", TEST_COUNTS, TEST_TEMPLATES, SEED + 1),
    ):
        rows = generate(counts, templates, seed)
        path = args.out_dir / f"support_tickets_{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} tickets to {path}")


if __name__ == "__main__":
    main()
