"""Patient-facing words of the short lessons at /me/learn/<condition> (issue 12, ADR 0027).

Our own text, written for this project in plain words at or below school grade 8. It teaches
self-care habits that go with home monitoring; it is not medical advice for one person, and
every lesson says to follow the care team's plan. Which lessons, questions and right answers
exist is api/portal/learn.py; the words are here.
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    "learn.title": "Learn about your health",
    "learn.intro": "Pick a lesson. Each one takes about five minutes and ends with a few questions.",
    "learn.check": "Check what you learned",
    "learn.submit": "Check my answers",
    "learn.right": "Right.",
    "learn.wrong": "Not quite.",
    "learn.unanswered": "You did not pick an answer for this one.",
    "learn.score": "You got {right} of {total} right.",
    "learn.all_right": "Well done. You know the key points of this lesson.",
    "learn.try_again": "Read the lesson again and have another go. There is no limit.",
    "learn.disclaimer": "This lesson is general. Always follow the plan your care team made for you.",
    "learn.back": "Back to my care plan",
    # --- heart failure -------------------------------------------------------------------
    "learn.heart_failure.title": "Living with heart failure",
    "learn.heart_failure.p1": (
        "Heart failure means your heart does not pump as well as it should. It does not mean your heart has"
        " stopped. Many people live well with it for years."
    ),
    "learn.heart_failure.p2": (
        "When the heart is weak, the body can hold on to water. Water adds weight fast. This is why your plan"
        " asks you to weigh yourself each morning."
    ),
    "learn.heart_failure.p3": (
        "Weigh yourself at the same time each day. Do it after you use the toilet and before you eat. Wear"
        " the same kind of clothes each time."
    ),
    "learn.heart_failure.p4": (
        "Tell your care team if your ankles swell, you get short of breath, or you need more pillows to sleep."
        " These can be signs that water is building up."
    ),
    "learn.heart_failure.q1": "When is the best time to weigh yourself?",
    "learn.heart_failure.q1.a": "In the morning, after the toilet and before you eat",
    "learn.heart_failure.q1.b": "Right after dinner",
    "learn.heart_failure.q1.c": "Any time, it does not matter",
    "learn.heart_failure.q1.why": "Weighing at the same time each morning makes the numbers easy to compare.",
    "learn.heart_failure.q2": "Why can your weight go up fast with heart failure?",
    "learn.heart_failure.q2.a": "Because you ate a big meal",
    "learn.heart_failure.q2.b": "Because your body may be holding on to water",
    "learn.heart_failure.q2.c": "Because the scale is old",
    "learn.heart_failure.q2.why": "A fast gain is often water, not fat. That is why your care team watches it.",
    "learn.heart_failure.q3": "Which of these should you tell your care team about?",
    "learn.heart_failure.q3.a": "Your ankles are more swollen than usual",
    "learn.heart_failure.q3.b": "You slept well",
    "learn.heart_failure.q3.c": "You went for a short walk",
    "learn.heart_failure.q3.why": "Swollen ankles can mean water is building up in your body.",
    # --- COPD ----------------------------------------------------------------------------
    "learn.copd.title": "Living with COPD",
    "learn.copd.p1": (
        "COPD is a long-term lung problem. The airways get narrow and it is harder to breathe out. It can"
        " get worse for a while. This is called a flare-up."
    ),
    "learn.copd.p2": (
        "Your oxygen clip measures how much oxygen is in your blood. With COPD, your care team may set a lower"
        " target than for other people. Your limits are made for you."
    ),
    "learn.copd.p3": (
        "Take your readings while sitting down and at rest. Warm your hands first. Cold fingers and nail"
        " polish can give wrong numbers."
    ),
    "learn.copd.p4": (
        "Signs of a flare-up are more cough, more phlegm, a change in its color, or getting out of breath"
        " more easily. Call your care team early if you notice these."
    ),
    "learn.copd.q1": "How should you take an oxygen reading?",
    "learn.copd.q1.a": "Right after climbing stairs",
    "learn.copd.q1.b": "Sitting down and at rest, with warm hands",
    "learn.copd.q1.c": "Outside in the cold",
    "learn.copd.q1.why": "Rest and warm hands give the most true number.",
    "learn.copd.q2": "Why might your oxygen limit be lower than other people's?",
    "learn.copd.q2.a": "Your care team set it for your lungs",
    "learn.copd.q2.b": "The device is broken",
    "learn.copd.q2.c": "Oxygen does not matter with COPD",
    "learn.copd.q2.why": "With COPD, a lower target can be the safe one. Your care team chose it for you.",
    "learn.copd.q3": "Which can be a sign of a flare-up?",
    "learn.copd.q3.a": "Your phlegm changes color",
    "learn.copd.q3.b": "You feel hungry",
    "learn.copd.q3.c": "You sleep a full night",
    "learn.copd.q3.why": "A change in phlegm is a common early sign. Call your care team early.",
    # --- hypertension --------------------------------------------------------------------
    "learn.hypertension.title": "Living with high blood pressure",
    "learn.hypertension.p1": (
        "Blood pressure is the push of blood on the walls of your blood vessels. High blood pressure often"
        " has no signs. That is why measuring at home helps."
    ),
    "learn.hypertension.p2": (
        "A reading has two numbers. The top number is the push when your heart beats. The bottom number is"
        " the push when your heart rests between beats."
    ),
    "learn.hypertension.p3": (
        "Sit still for five minutes before you measure. Keep your feet flat and your back against the chair."
        " Rest your arm at the level of your heart. Do not talk."
    ),
    "learn.hypertension.p4": (
        "If a reading is very high, wait a few minutes and measure again. If it is still very high, your"
        " care team is told. Call emergency services if you have chest pain or trouble speaking."
    ),
    "learn.hypertension.q1": "What should you do before you measure?",
    "learn.hypertension.q1.a": "Drink a cup of coffee",
    "learn.hypertension.q1.b": "Sit still for five minutes with your feet flat",
    "learn.hypertension.q1.c": "Walk around the room",
    "learn.hypertension.q1.why": "Resting first gives a true reading of your blood pressure.",
    "learn.hypertension.q2": "What does the top number show?",
    "learn.hypertension.q2.a": "The push when your heart beats",
    "learn.hypertension.q2.b": "Your heart rate",
    "learn.hypertension.q2.c": "The push when your heart rests",
    "learn.hypertension.q2.why": "The top number is the push when your heart beats.",
    "learn.hypertension.q3": "A reading is very high. What comes first?",
    "learn.hypertension.q3.a": "Stop measuring for a week",
    "learn.hypertension.q3.b": "Wait a few minutes and measure again",
    "learn.hypertension.q3.c": "Take an extra pill",
    "learn.hypertension.q3.why": (
        "A second reading shows if the first one was true. Never change your pills on your own."
    ),
    # --- diabetes ------------------------------------------------------------------------
    "learn.diabetes.title": "Living with diabetes",
    "learn.diabetes.p1": (
        "Diabetes means your body has trouble keeping your blood sugar in a healthy range. Food, activity,"
        " stress and medicine all change it during the day."
    ),
    "learn.diabetes.p2": (
        "Wash and dry your hands before you test. Sugar on your fingers can make the reading too high. Use"
        " the side of your fingertip. It hurts less."
    ),
    "learn.diabetes.p3": (
        "Low blood sugar can make you shaky, sweaty, hungry or mixed up. If this happens, eat or drink"
        " something sweet and test again after fifteen minutes."
    ),
    "learn.diabetes.p4": (
        "High blood sugar can make you thirsty and tired. Tell your care team if your readings stay high."
        " They may change your plan."
    ),
    "learn.diabetes.q1": "What should you do before you test your blood sugar?",
    "learn.diabetes.q1.a": "Wash and dry your hands",
    "learn.diabetes.q1.b": "Eat some fruit",
    "learn.diabetes.q1.c": "Put on hand cream",
    "learn.diabetes.q1.why": "Clean, dry hands keep food sugar off the test strip.",
    "learn.diabetes.q2": "You feel shaky and sweaty. What could this be?",
    "learn.diabetes.q2.a": "High blood sugar",
    "learn.diabetes.q2.b": "Low blood sugar",
    "learn.diabetes.q2.c": "A normal day",
    "learn.diabetes.q2.why": "Shaky and sweaty are common signs of low blood sugar.",
    "learn.diabetes.q3": "After you treat a low, when should you test again?",
    "learn.diabetes.q3.a": "The next day",
    "learn.diabetes.q3.b": "After about fifteen minutes",
    "learn.diabetes.q3.c": "Never",
    "learn.diabetes.q3.why": "Testing again after fifteen minutes shows if your sugar came back up.",
}
