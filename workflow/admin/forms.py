"""The console's forms. Every one carries a CSRF token (Flask-WTF); every error names the field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DateField, EmailField, HiddenField, PasswordField, StringField
from wtforms import RadioField, SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from ..declines import OUTCOMES
from ..roster import FIRST_NAME_MAX, LABELS, NAME_MAX, ROLE_MAX

_SHORT_REASON = Length(max=500, message="Keep the reason under 500 characters.")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class LoginForm(FlaskForm):
    email = EmailField("Email address",
                       [InputRequired("Enter your email address."), Length(max=320)])
    password = PasswordField("Password", [InputRequired("Enter your password."), Length(max=1024)])
    next = HiddenField()


class ReasonForm(FlaskForm):
    reason = TextAreaField("Reason", [DataRequired("Give a reason: it is kept with the record."),
                                      _SHORT_REASON], filters=[_strip])


class ResolveForm(FlaskForm):
    """How a decline ("I can't confirm this") was resolved: asked again, or excused, and why."""

    outcome = RadioField("What happens now",
                         choices=[SelectChoice(value, label) for value, label in OUTCOMES.items()],
                         validators=[InputRequired("Choose what happens now.")])
    note = TextAreaField("What was decided, and by whom",
                         [DataRequired("Say what was decided: it is kept with the record."),
                          _SHORT_REASON], filters=[_strip],
                         description="For example: Spoke with Amira on 3 September; the friend "
                                     "is her sister, not a parent at the setting.")


class PaperForm(FlaskForm):
    """A paper sign-off: the date on the signed form, where the form is kept, and the office's note.

    `today` (the setting's date) is given by the page: a form cannot have been signed after it."""

    signed_on = DateField("Date signed on the form",
                          [InputRequired("Enter the date the form was signed.")])
    kept = StringField("Where the signed form is kept",
                       [DataRequired("Say where the signed form is kept, e.g. Staff file, office "
                                     "cabinet."),
                        Length(max=200, message="Keep where it is kept under 200 characters.")],
                       filters=[_strip], description="For example: Staff file, office cabinet.")
    note = TextAreaField("Note (optional)",
                         [Optional(),
                          Length(max=500, message="Keep the note under 500 characters.")],
                         filters=[_strip])

    def __init__(self, *args, today=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today

    def validate_signed_on(self, field):
        if self.today is not None and field.data is not None and field.data > self.today:
            raise ValidationError("The date signed cannot be in the future.")


class ExtendForm(FlaskForm):
    due = DateField("New due date", [InputRequired("Choose the new due date.")])
    reason = TextAreaField("Reason (optional)", [Optional(), _SHORT_REASON], filters=[_strip])


class StaffForm(FlaskForm):
    name = StringField("Name", [InputRequired("Enter the person's name."),
                                Length(max=NAME_MAX)])
    email = EmailField("Email address", [InputRequired("Enter the person's email address."),
                                         Length(max=320)])
    first_name = StringField("Known as (optional)", [Optional(), Length(max=FIRST_NAME_MAX)],
                             description="Emails greet them by this. Left empty: the first word "
                                         "of their name.")
    role = StringField("Role (optional)", [Optional(), Length(max=ROLE_MAX)])
    groups = StringField("Groups (optional)", [Optional(), Length(max=500)],
                         description="Separated by semicolons, e.g. teaching; first aid.")
    start_date = DateField("Start date (optional)", [Optional()],
                           description="New starters get their first reminder on this day.")
    active = BooleanField("Active: gets reminders", default=True)


class UploadForm(FlaskForm):
    file = FileField("Roster CSV file", [FileRequired("Choose a CSV file to upload.")])
    full = BooleanField("This is the whole staff list: make anyone not in it inactive")


class ApplyForm(FlaskForm):
    upload = HiddenField()


class ColumnsForm(FlaskForm):
    """Which column of an upload is which, where its headings are not ones we know."""

    upload = HiddenField()


for _name, _label in LABELS.items():  # one choice of column per roster field
    setattr(ColumnsForm, _name, SelectField(_label[0].upper() + _label[1:], choices=[],
                                            validate_choice=False))  # see people.choose_columns


class PolicyForm(FlaskForm):
    """A policy: what staff read and tick, who it is for, and its own schedule (empty: the
    setting's). `action` is "preview" or "save"; `previewed` carries what the admin last saw
    previewed, so that nothing is saved that was not shown first (see policy_pages)."""

    title = StringField("Title", [InputRequired("Give the policy a title."), Length(max=200)],
                        filters=[_strip])
    text = TextAreaField("The policy's text (Markdown)", [Optional(), Length(max=200_000)],
                         description="Headings start with #; a blank line starts a paragraph. "
                                     "Or upload the file below.")
    upload = FileField("…or upload it as a Word, Markdown or text file (.docx, .md, .txt)")
    statements = TextAreaField("Statements each person ticks, one a line",
                               [InputRequired("Give at least one statement to tick."),
                                Length(max=5000)], filters=[_strip])
    reminder_note = StringField("Reminder note (optional)", [Optional(), Length(max=500)],
                                filters=[_strip],
                                description="One more thing the reminder asks, e.g. “Check your "
                                            "privacy settings are still set high.”")
    audience = StringField("Who it is for (optional)", [Optional(), Length(max=1000)],
                           filters=[_strip],
                           description="Roster groups separated by semicolons, e.g. site; "
                                       "caretaking. Left empty: everyone.")
    annual_open = StringField("Opens every year on (MM-DD)", [Optional(), Length(max=5)],
                              filters=[_strip])
    send_time = StringField("Emails go at (HH:MM)", [Optional(), Length(max=5)],
                            filters=[_strip])
    reminder_after_days = StringField("Follow-ups, days after the first reminder",
                                      [Optional(), Length(max=100)], filters=[_strip],
                                      description="e.g. 7, 14. Type none for no follow-ups.")
    escalate_after_days = StringField("Days to confirm in", [Optional(), Length(max=3)],
                                      filters=[_strip])
    working_days_only = SelectField("Working days only",
                                    choices=[SelectChoice("", "as the setting"),
                                             SelectChoice("yes", "yes"),
                                             SelectChoice("no", "no: any day")])
    review_every_months = StringField("Review every (months)", [Optional(), Length(max=2)],
                                      filters=[_strip],
                                      description="Counted from its latest approval; left "
                                                  "empty, 12.")
    change = RadioField("Is a new text a material change?",
                        choices=[SelectChoice("material", "Material: it changes what staff must "
                                                          "do. Once approved, everyone who "
                                                          "confirmed the older text this cycle "
                                                          "is asked again"),
                                 SelectChoice("minor", "Minor: wording only. Confirmations "
                                                       "stand")],
                        validators=[Optional()])
    note = TextAreaField("What the new text changes", [Optional(), Length(max=1000)],
                         filters=[_strip],
                         description="Shown to staff with the changed passages, e.g. “§4: "
                                     "photos on personal phones”. A new text is proposed: it "
                                     "reaches staff once approved.")
    action = HiddenField()
    previewed = HiddenField()


class ReviewForm(FlaskForm):
    """An early review (an incident, a change in technology), or a review date set by hand."""

    on = DateField("Review date", [InputRequired("Enter the date of the review.")],
                   description="Today, for an early review.")
    reason = TextAreaField("Why", [DataRequired("Say why, e.g. an incident or a change in "
                                                "technology: it is kept with the record."),
                                   _SHORT_REASON], filters=[_strip])


class ApprovalForm(FlaskForm):
    """One approval of a policy version, as the governors' minutes record it."""

    name = StringField("Approved by (name)", [DataRequired("Give the name of who approved it."),
                                              Length(max=200)], filters=[_strip])
    role = StringField("Their role", [DataRequired("Give their role, e.g. Chair of Governors."),
                                      Length(max=200)], filters=[_strip],
                       description="e.g. Chair of Governors, Head Teacher")
    approved_on = DateField("Date approved", [InputRequired("Enter the date it was approved.")])
    minute = StringField("Minute reference (optional)", [Optional(), Length(max=200)],
                         filters=[_strip])

    def __init__(self, *args, today=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today

    def validate_approved_on(self, field):
        if self.today is not None and field.data is not None and field.data > self.today:
            raise ValidationError("The date approved cannot be in the future.")


class StateForm(FlaskForm):
    state = HiddenField()


class ClosureForm(FlaskForm):
    name = StringField("Name", [InputRequired("Name the closure, e.g. Christmas holiday."),
                                Length(max=100)], filters=[_strip])
    first = DateField("First day closed", [InputRequired("Enter the first day.")])
    last = DateField("Last day closed", [InputRequired("Enter the last day.")])
    action = HiddenField()
    previewed = HiddenField()

    def validate_last(self, field):
        if self.first.data and field.data and field.data < self.first.data:
            raise ValidationError("The last day cannot be before the first.")


class RemoveForm(FlaskForm):
    action = HiddenField()
