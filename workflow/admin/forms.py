"""The console's forms. Every one carries a CSRF token (Flask-WTF); every error names the field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DateField, EmailField, HiddenField, PasswordField, StringField
from wtforms import SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

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
